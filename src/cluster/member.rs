//! Who a node is, as the others see it, and the live member view built from heartbeats.

use std::fmt;

use serde::{Deserialize, Serialize};

/// What a node does for the cluster.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    Ingest,
    Scheduler,
    Models,
    Forecast,
    Gateway,
}

impl Role {
    pub const ALL: [Role; 5] = [
        Role::Ingest,
        Role::Scheduler,
        Role::Models,
        Role::Forecast,
        Role::Gateway,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Role::Ingest => "ingest",
            Role::Scheduler => "scheduler",
            Role::Models => "models",
            Role::Forecast => "forecast",
            Role::Gateway => "gateway",
        }
    }

    /// Parses a role name; the error names the role and the known ones.
    pub fn parse(name: &str) -> Result<Role, String> {
        Role::ALL
            .into_iter()
            .find(|role| role.name() == name.trim())
            .ok_or_else(|| {
                format!(
                    "unknown role `{name}` (known: ingest, scheduler, models, forecast, gateway)"
                )
            })
    }
}

/// A node as it introduces itself in heartbeats (`Default`: an undecodable payload, ignored).
#[derive(Debug, Clone, Default, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct MemberInfo {
    /// Unique name in the cluster.
    pub name: String,
    /// host:port other nodes dial.
    pub advertise: String,
    pub roles: Vec<Role>,
    /// When this incarnation of the node started (ms since the epoch): a restarted node is
    /// the same member with a newer incarnation.
    pub incarnation: u64,
    /// Series this node fits at once (its training pool); the scheduler keeps about twice
    /// as many trainings in flight on it.
    pub workers: u32,
}

impl MemberInfo {
    pub fn has_role(&self, role: Role) -> bool {
        self.roles.contains(&role)
    }
}

/// The live members, this node included, sorted by name.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct MemberView {
    pub members: Vec<MemberInfo>,
}

impl MemberView {
    pub fn names(&self) -> Vec<&str> {
        self.members
            .iter()
            .map(|member| member.name.as_str())
            .collect()
    }

    /// Live members that have `role`, by name.
    pub fn with_role(&self, role: Role) -> Vec<&MemberInfo> {
        self.members
            .iter()
            .filter(|member| member.has_role(role))
            .collect()
    }
}

crate::bincode_message_payload!(MemberInfo, MemberView);

impl fmt::Display for MemberView {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} members [{}]",
            self.members.len(),
            self.names().join(", ")
        )
    }
}

#[cfg(test)]
mod tests {
    use ractor::BytesConvertable;

    use super::*;

    #[test]
    fn roles_parse_by_name() {
        assert_eq!(Role::parse("models"), Ok(Role::Models));
        assert!(Role::parse("cooking").unwrap_err().contains("`cooking`"));
    }

    #[test]
    fn member_info_crosses_the_wire() {
        let info = MemberInfo {
            name: "a".to_string(),
            advertise: "127.0.0.1:7400".to_string(),
            roles: vec![Role::Models, Role::Gateway],
            incarnation: 42,
            workers: 4,
        };
        assert_eq!(MemberInfo::from_bytes(info.clone().into_bytes()), info);
        assert_eq!(MemberInfo::from_bytes(vec![0xff, 0xff]).name, "");
        let view = MemberView {
            members: vec![info],
        };
        assert_eq!(view.to_string(), "1 members [a]");
        assert_eq!(MemberView::from_bytes(view.clone().into_bytes()), view);
    }
}
