//! The built-in kinds served by every Corral server, one module each.

pub mod configmap;
pub mod custom_resource_definition;
pub mod dns_record;
pub mod event;
pub mod framework;
pub mod job;
pub mod lease;
pub mod namespace;
pub mod node;
pub mod quota;
pub mod rbac;
pub mod service;
pub mod sync;
pub mod task;
pub mod token;
pub mod volume;

pub use configmap::{ConfigMap, ConfigMapSpec, ConfigMapStatus};
pub use custom_resource_definition::{
    CustomResourceDefinition, CustomResourceDefinitionSpec, CustomResourceDefinitionStatus, CustomResourceSchema,
    ResourceScope,
};
pub use dns_record::{DnsRecord, DnsRecordSpec, DnsRecordStatus, DnsRecordType, SrvTarget};
pub use event::{Event, EventSource, EventSpec, EventStatus, EventType, ObjectReference};
pub use framework::{Framework, FrameworkSpec, FrameworkStatus, Offer, OfferSpec, OfferStatus};
pub use job::{Job, JobRun, JobRunSpec, JobRunStatus, JobSpec, JobStatus};
pub use lease::{Lease, LeaseSpec, LeaseStatus};
pub use namespace::{Namespace, NamespaceSpec, NamespaceStatus};
pub use node::Node;
pub use quota::{Quota, QuotaSpec, QuotaStatus};
pub use rbac::{
    ClusterRole, ClusterRoleBinding, ClusterRoleBindingSpec, ClusterRoleSpec, PolicyRule, Role, RoleBinding,
    RoleBindingSpec, RoleRef, RoleSpec, Subject,
};
pub use service::{Service, ServiceSpec, ServiceStatus};
pub use sync::{SyncObject, SyncSpec, SyncStatus};
pub use task::Task;
pub use token::{Token, TokenPurpose, TokenSpec};
pub use volume::{ReclaimPolicy, Volume, VolumePhase, VolumeSpec, VolumeStatus};

use crate::resource::Resource;

/// The kinds every server serves, in discovery order.
pub fn builtin_kinds() -> Vec<crate::KindInfo> {
    vec![
        Namespace::kind_info(),
        ConfigMap::kind_info(),
        CustomResourceDefinition::kind_info(),
        Lease::kind_info(),
        Event::kind_info(),
        Node::kind_info(),
        Task::kind_info(),
        Framework::kind_info(),
        Offer::kind_info(),
        Service::kind_info(),
        Volume::kind_info(),
        DnsRecord::kind_info(),
        Job::kind_info(),
        JobRun::kind_info(),
        SyncObject::kind_info(),
        Quota::kind_info(),
        Role::kind_info(),
        ClusterRole::kind_info(),
        RoleBinding::kind_info(),
        ClusterRoleBinding::kind_info(),
        Token::kind_info(),
    ]
}
