//! Budgets end to end: concurrent charges, the budget API, and crashes under load.
