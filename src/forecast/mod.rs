//! The forecast engine: a pure library, series in, fitted models and forecasts out. It knows
//! no actors, cluster, database or HTTP, so it can be tested and benchmarked alone.
//!
//! - [`series`]: one store's days and the model inputs derived from them;
//! - [`profile`]: how a series is modelled (`reference`, `default`), as configuration;
//! - [`model`]: fit, store, restore and forecast one Prophet model, with seeded intervals;
//! - [`validation`]: walk-forward cross-validation, metrics, and training a series;
//! - [`planner`]: what is known ahead about future days (holidays, promotions, opening);
//! - [`backtest`]: forecasts from past origins scored with RMSPE;
//! - [`optimizer`]: the native MAP optimizer for Prophet's model (objective, gradient and a
//!   port of Stan's L-BFGS), plugged into `augurs-prophet`.

pub mod backtest;
pub mod model;
pub mod optimizer;
pub mod planner;
pub mod profile;
pub mod series;
pub mod validation;
