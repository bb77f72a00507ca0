//! Which node's model actor serves a series: placement over the live model hosts, as the
//! nodes themselves compute it. The series list and the placement are cached (the list for
//! a few seconds, the placement until the model hosts change), so a request costs one
//! member-view call, not a scan of `sales`.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use ractor::ActorRef;

use super::{ACTOR_TIMEOUT, ApiError, Gateway};
use crate::actors::membership::MembershipMessage;
use crate::actors::model_host::{ModelHostMessage, owner_host, placement};
use crate::cluster::member::Role;
use crate::cluster::placement::{Placement, SeriesKey};

/// How long the list of series (stores with sales) is trusted before it is read again.
const SERIES_FRESH_FOR: Duration = Duration::from_secs(5);

/// The cache, per product.
#[derive(Default)]
pub struct Routing {
    products: Mutex<HashMap<String, Routes>>,
}

struct Routes {
    read_at: Instant,
    hosts: Vec<String>,
    stores: Vec<u32>,
    placement: Arc<Placement>,
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
        let cached = self.cached(product, &hosts);
        let (stores, placement) = match cached {
            Some(found) => found,
            None => {
                let stores = gateway
                    .database
                    .stores_with_sales(product)
                    .await
                    .map_err(ApiError::database)?;
                let keys: Vec<SeriesKey> = stores
                    .iter()
                    .map(|store| SeriesKey::new(*store, product.to_string()))
                    .collect();
                let computed = Arc::new(placement(&view, &keys));
                self.remember(product, hosts, stores.clone(), computed.clone());
                (stores, computed)
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

    fn cached(&self, product: &str, hosts: &[String]) -> Option<(Vec<u32>, Arc<Placement>)> {
        let products = self.products.lock().ok()?;
        let routes = products.get(product)?;
        (routes.hosts == hosts && routes.read_at.elapsed() < SERIES_FRESH_FOR)
            .then(|| (routes.stores.clone(), routes.placement.clone()))
    }

    fn remember(
        &self,
        product: &str,
        hosts: Vec<String>,
        stores: Vec<u32>,
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
