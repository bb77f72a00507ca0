//! The forecast engine: a pure library, series in, fitted models and forecasts out. It knows
//! no actors, cluster, database or HTTP, so it can be tested and benchmarked alone.
//!
//! - [`optimizer`]: the native MAP optimizer for Prophet's model (objective, gradient and a
//!   port of Stan's L-BFGS), plugged into `augurs-prophet`.

pub mod optimizer;
pub mod profile;
pub mod series;
