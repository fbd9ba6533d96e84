//! nerveabr-py: the chunk scenario of `nerveabr-sim` as a step-wise environment for
//! reinforcement learning ([`env`]), and (feature `python`) its Python module `nerveabr_py`,
//! which `nerve_learning.rl` wraps as a gymnasium environment.

pub mod env;
#[cfg(feature = "python")]
mod py;
