//! Switches for benchmarks, compiled in only with the `bench` feature: a gateway that serves
//! agents is never built with them.
//!
//! `ithil-bench run` starts one gateway per setting to measure, in one run, what durable
//! charging costs a tool call (see `docs/benchmarks.md`).

use ithil_budget::BudgetConfig;

/// How tool calls are charged.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum Charging {
    /// As shipped: every waiting charge in one durable commit.
    #[default]
    Group,
    /// One durable commit per charge: the writer without group commit.
    PerCall,
    /// Nothing goes through the charge writer: no charge, no audit record, no commit.
    Off,
}

impl Charging {
    /// The budget writer's configuration under this setting.
    pub fn budget_config(self, config: BudgetConfig) -> BudgetConfig {
        match self {
            Charging::PerCall => BudgetConfig {
                max_group: 1,
                ..config
            },
            Charging::Group | Charging::Off => config,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_per_call_changes_the_writer_and_group_is_the_default() {
        let shipped = BudgetConfig::default();
        assert_eq!(Charging::default(), Charging::Group);
        assert_eq!(Charging::Group.budget_config(shipped.clone()), shipped);
        assert_eq!(Charging::Off.budget_config(shipped.clone()), shipped);
        let per_call = Charging::PerCall.budget_config(shipped.clone());
        assert_eq!(per_call.max_group, 1);
        assert_eq!(
            BudgetConfig {
                max_group: shipped.max_group,
                ..per_call
            },
            shipped
        );
    }
}
