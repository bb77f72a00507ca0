//! Which node's model actor serves a series: placement over the live model hosts, as the
//! nodes themselves compute it. The series list and the placement are cached (the list for
//! a few seconds, the placement until the model hosts change), so a request costs one
//! member-view call, not a scan of `sales`. One request at a time refreshes the cache; the
//! others meanwhile use what it holds, unless the model hosts changed.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use ractor::ActorRef;

use super::{ACTOR_TIMEOUT, ApiError, Gateway};
use crate::actors::membership::MembershipMessage;
use crate::actors::model_host::{ModelHostMessage, owner_host, placement};
use crate::cluster::member::{MemberView, Role};
use crate::cluster::placement::{Placement, SeriesKey};

/// How long the list of series (stores with sales) is trusted before it is read again.
const SERIES_FRESH_FOR: Duration = Duration::from_secs(5);

/// The cache, per product.
#[derive(Default)]
pub struct Routing {
    products: Mutex<HashMap<String, Routes>>,
    /// Held by the request that reads the series list again.
    refreshing: tokio::sync::Mutex<()>,
}

struct Routes {
    read_at: Instant,
    hosts: Vec<String>,
    stores: Arc<Vec<u32>>,
    placement: Arc<Placement>,
}

enum Cached {
    Fresh((Arc<Vec<u32>>, Arc<Placement>)),
    Stale((Arc<Vec<u32>>, Arc<Placement>)),
}

/// A series' owner: its node's name and model host.
pub struct Owner {
    pub node: String,
    pub host: ActorRef<ModelHostMessage>,
}

impl Routing {
    /// The owner of (`store`, `product`); 404 for a series with no sales, 503 when no live
    /// model host runs it.
    pub async fn owner(
        &self,
        gateway: &Gateway,
        store: u32,
        product: &str,
    ) -> Result<Owner, ApiError> {
        let view = ractor::call_t!(
            gateway.membership,
            MembershipMessage::GetView,
            ACTOR_TIMEOUT.as_millis() as u64
        )
        .map_err(|error| ApiError::unavailable(format!("membership does not answer: {error}")))?;
        let hosts: Vec<String> = view
            .with_role(Role::Models)
            .into_iter()
            .map(|member| member.name.clone())
            .collect();
        let (stores, placement) = match self.cached(product, &hosts) {
            Some(Cached::Fresh(found)) => found,
            Some(Cached::Stale(found)) => match self.refreshing.try_lock() {
                // Another request is reading the list again: this one uses the last.
                Err(_) => found,
                Ok(_refreshing) => self.refresh(gateway, product, &view, hosts).await?,
            },
            None => {
                let _refreshing = self.refreshing.lock().await;
                match self.cached(product, &hosts) {
                    Some(Cached::Fresh(found)) => found,
                    _ => self.refresh(gateway, product, &view, hosts).await?,
                }
            }
        };
        if stores.binary_search(&store).is_err() {
            return Err(ApiError::not_found(format!(
                "unknown series: store {store} has no sales of product {product}"
            )));
        }
        let key = SeriesKey::new(store, product.to_string());
        let (node, host) = owner_host(&placement, &key).ok_or_else(|| {
            ApiError::unavailable(format!(
                "no live model host runs store {store} ({product}) yet"
            ))
        })?;
        Ok(Owner { node, host })
    }

    /// What the cache holds for `product` with these model hosts: fresh, or due for a read.
    fn cached(&self, product: &str, hosts: &[String]) -> Option<Cached> {
        let products = self.products.lock().ok()?;
        let routes = products.get(product)?;
        if routes.hosts != hosts {
            return None;
        }
        let found = (routes.stores.clone(), routes.placement.clone());
        Some(if routes.read_at.elapsed() < SERIES_FRESH_FOR {
            Cached::Fresh(found)
        } else {
            Cached::Stale(found)
        })
    }

    /// Reads the series list and computes their placement.
    async fn refresh(
        &self,
        gateway: &Gateway,
        product: &str,
        view: &MemberView,
        hosts: Vec<String>,
    ) -> Result<(Arc<Vec<u32>>, Arc<Placement>), ApiError> {
        let stores = gateway
            .database
            .stores_with_sales(product)
            .await
            .map_err(ApiError::database)?;
        let keys: Vec<SeriesKey> = stores
            .iter()
            .map(|store| SeriesKey::new(*store, product.to_string()))
            .collect();
        let computed = Arc::new(placement(view, &keys));
        let stores = Arc::new(stores);
        self.remember(product, hosts, stores.clone(), computed.clone());
        Ok((stores, computed))
    }

    fn remember(
        &self,
        product: &str,
        hosts: Vec<String>,
        stores: Arc<Vec<u32>>,
        placement: Arc<Placement>,
    ) {
        if let Ok(mut products) = self.products.lock() {
            products.insert(
                product.to_string(),
                Routes {
                    read_at: Instant::now(),
                    hosts,
                    stores,
                    placement,
                },
            );
        }
    }
}
