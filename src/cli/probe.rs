//! `storecast probe`: asks a node's admin listener whether the process is alive, for container
//! health checks (the runtime image has no curl).

use std::time::Duration;

use anyhow::Context as _;
use clap::Args;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;

use crate::config::Config;

#[derive(Debug, Args)]
pub struct ProbeArgs {
    /// Address of the admin listener, `HOST:PORT` [default: admin.listen, with an all-interfaces
    /// host asked on loopback].
    #[arg(long, value_name = "HOST:PORT")]
    pub admin: Option<String>,
    /// Which check: `livez` (the process answers) or `readyz` (it also serves its roles).
    #[arg(long, default_value = "livez", value_parser = ["livez", "readyz"])]
    pub check: String,
    /// Seconds to wait for the answer.
    #[arg(long, default_value_t = 3, value_name = "SECS")]
    pub timeout: u64,
}

pub async fn run(args: ProbeArgs, config: &Config) -> anyhow::Result<()> {
    let address = match &args.admin {
        Some(address) => address.clone(),
        None => probe_address(&config.admin.listen),
    };
    let path = format!("/health/{}", args.check);
    let (status, body) = tokio::time::timeout(
        Duration::from_secs(args.timeout.max(1)),
        get(&address, &path),
    )
    .await
    .with_context(|| format!("no answer from {address}{path} within {}s", args.timeout))??;
    if status == 200 {
        println!("{address}{path}: ok");
        Ok(())
    } else {
        anyhow::bail!("{address}{path} answered {status}: {}", body.trim())
    }
}

/// Where to probe a node listening on `listen`: an all-interfaces host becomes loopback.
pub fn probe_address(listen: &str) -> String {
    match listen.rsplit_once(':') {
        Some(("0.0.0.0" | "[::]" | "", port)) => format!("127.0.0.1:{port}"),
        _ => listen.to_string(),
    }
}

/// One HTTP/1.1 GET with `Connection: close`: the status code and the body.
async fn get(address: &str, path: &str) -> anyhow::Result<(u16, String)> {
    let mut stream = TcpStream::connect(address)
        .await
        .with_context(|| format!("cannot connect to the admin listener at {address}"))?;
    let request = format!("GET {path} HTTP/1.1\r\nHost: {address}\r\nConnection: close\r\n\r\n");
    stream
        .write_all(request.as_bytes())
        .await
        .with_context(|| format!("cannot send to {address}"))?;
    let mut response = Vec::new();
    stream
        .read_to_end(&mut response)
        .await
        .with_context(|| format!("cannot read the answer of {address}"))?;
    let text = String::from_utf8_lossy(&response);
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|code| code.parse().ok())
        .with_context(|| format!("{address} did not answer HTTP: {:?}", head.lines().next()))?;
    Ok((status, body.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn all_interfaces_are_probed_on_loopback() {
        assert_eq!(probe_address("0.0.0.0:9400"), "127.0.0.1:9400");
        assert_eq!(probe_address("[::]:9400"), "127.0.0.1:9400");
        assert_eq!(probe_address("10.0.0.7:9400"), "10.0.0.7:9400");
        assert_eq!(probe_address("127.0.0.1:9400"), "127.0.0.1:9400");
    }
}
