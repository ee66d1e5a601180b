//! The Sluice Kubernetes operator: CRD types (`Cluster`, `Topic`, `ConsumerGroup`) and
//! their reconcilers. Not built yet; the broker's standalone mode does not depend on it.
//! See `docs/architecture.md` for the plan and the issue tracker for its status.
