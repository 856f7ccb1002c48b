//! Offers: two-level scheduling as in Mesos. Nodes' free resources become offers to
//! frameworks in weighted-DRF order; a framework accepts an offer by creating tasks
//! bound to its node.
//!
//! Built so far: the allocator ([`decide`]), a pure function from the cluster's nodes,
//! frameworks, quotas and outstanding offers to the offers to make and to rescind. The
//! `Framework` and `Offer` kinds, the reconcile that applies the plan and the accept
//! path in the server come next (issue 11).

pub mod decide;
