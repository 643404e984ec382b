//! Tests that span modules: the rules of `plan` one by one, property tests and a closed-loop
//! simulation for oscillation.

mod events;
pub mod fixtures;
mod learning;
mod plan_rules;
mod props;
mod sim;
