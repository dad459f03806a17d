//! The orchestrator's VM lifecycle on top of an embedded [`Ipam`]: every NIC of a VM is
//! allocated in one atomic batch (owner `vm/<name>/<nic>`), the backend gets each NIC's
//! network configuration, and a backend failure releases everything the VM was given.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use ipam_core::{AllocateError, Allocation, Labels, Op, OpError, OpOutput};
use ipam_raft::{Consistency, Ipam, IpamError};
use serde::{Deserialize, Serialize};

use crate::backend::{BackendError, VmBackend};
use crate::netconfig::NicConfig;
use crate::retry::retry;

/// Where a NIC's address comes from.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum NicTarget {
    /// The lowest free address of this pool.
    Pool(String),
    /// This address, in whichever pool contains it.
    Address(IpAddr),
    /// The least loaded pool whose labels contain every pair (chosen by IPAM's state
    /// machine when the batch applies).
    Selector(Labels),
}

/// One NIC of a VM to create.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct NicRequest {
    /// Interface name inside the VM (`eth0`).
    pub name: String,
    /// Where its address comes from.
    pub target: NicTarget,
}

/// A VM as IPAM knows it: its NICs and their configuration.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Vm {
    /// Name.
    pub name: String,
    /// NICs in name order.
    pub nics: Vec<NicConfig>,
}

/// Why a VM operation failed. Nothing of the VM was allocated unless said otherwise.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum VmError {
    /// The request itself is wrong (name, NIC list).
    #[error("invalid request: {0}")]
    Invalid(String),
    /// A VM of that name exists.
    #[error("VM {0:?} exists")]
    Exists(String),
    /// No VM of that name.
    #[error("VM {0:?} not found")]
    NotFound(String),
    /// A NIC's pool does not exist.
    #[error("pool {0:?} not found")]
    PoolNotFound(String),
    /// An explicit address lies in no pool.
    #[error("{0} lies in no pool")]
    NoPool(IpAddr),
    /// An explicit address is held by someone else.
    #[error("{ip} is already allocated to {owner:?}")]
    AddressTaken {
        /// The address.
        ip: IpAddr,
        /// Its holder.
        owner: String,
    },
    /// A NIC's pool has no free address: the VM cannot be created until one is freed or the
    /// pool grows.
    #[error("pool {0:?} has no free address")]
    PoolExhausted(String),
    /// No pool matches a NIC's selector (`k=v,...`).
    #[error("no pool matches selector {0}")]
    NoMatchingPool(String),
    /// The backend failed; every address the VM was given has been released.
    #[error(transparent)]
    Backend(#[from] BackendError),
    /// An allocate op of the batch answered another op's result (a bug, never expected).
    #[error("an allocate op answered {0}")]
    Unexpected(String),
    /// IPAM refused or could not answer in time.
    #[error("ipam: {0}")]
    Ipam(#[from] IpamError),
}

/// The owner string of `vm`'s NIC `nic`: what IPAM records and what a release by owner names.
pub fn owner(vm: &str, nic: &str) -> String {
    format!("vm/{vm}/{nic}")
}

/// `(vm, nic)` of an owner written by [`owner`].
pub fn parse_owner(owner: &str) -> Option<(&str, &str)> {
    owner.strip_prefix("vm/")?.split_once('/')
}

fn check_name(kind: &str, name: &str) -> Result<(), VmError> {
    let ok = !name.is_empty()
        && name.len() <= 63
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'.')
        && name.as_bytes()[0].is_ascii_alphanumeric();
    if ok {
        Ok(())
    } else {
        Err(VmError::Invalid(format!(
            "{kind} name {name:?}: 1–63 of a-z, 0-9, '-', '.', starting with a letter or digit"
        )))
    }
}

/// Creates and deletes VMs, keeping their addresses in IPAM.
pub struct Orchestrator {
    ipam: Ipam,
    backend: Arc<dyn VmBackend>,
    budget: Duration,
}

impl Orchestrator {
    /// An orchestrator on this node's IPAM handle; IPAM calls are retried for up to 30 s.
    pub fn new(ipam: Ipam, backend: Arc<dyn VmBackend>) -> Orchestrator {
        Orchestrator {
            ipam,
            backend,
            budget: Duration::from_secs(30),
        }
    }

    /// The embedded IPAM handle.
    pub fn ipam(&self) -> &Ipam {
        &self.ipam
    }

    /// Allocates every NIC of `name` in one atomic batch, hands the backend their
    /// configuration, and on a backend failure releases them all again.
    pub async fn create_vm(&self, name: &str, nics: &[NicRequest]) -> Result<Vm, VmError> {
        check_name("VM", name)?;
        if nics.is_empty() || nics.len() > 16 {
            return Err(VmError::Invalid(format!(
                "a VM has 1–16 NICs, not {}",
                nics.len()
            )));
        }
        let mut seen = std::collections::BTreeSet::new();
        for nic in nics {
            check_name("NIC", &nic.name)?;
            if !seen.insert(nic.name.as_str()) {
                return Err(VmError::Invalid(format!("NIC {:?} given twice", nic.name)));
            }
        }
        // A VM exists when one of these NICs' owners holds an address. (Two concurrent creates
        // of one name both pass this check; they then share the allocations, which is why a
        // real orchestrator serialises creates of one name in its own VM records.)
        for nic in nics {
            let held = self
                .ipam
                .owner_allocations(&owner(name, &nic.name), Consistency::Linearizable)
                .await?;
            if !held.is_empty() {
                return Err(VmError::Exists(name.to_string()));
            }
        }

        let mut ops = Vec::with_capacity(nics.len());
        for nic in nics {
            let labels = Labels::from([("vm".to_string(), name.to_string())]);
            let (pool, ip) = match &nic.target {
                NicTarget::Pool(pool) => (pool.clone(), None),
                NicTarget::Address(ip) => (self.pool_of(*ip).await?, Some(*ip)),
                NicTarget::Selector(selector) => {
                    ops.push(Op::AllocateAny {
                        owner: owner(name, &nic.name),
                        selector: selector.clone(),
                        family: None,
                        labels,
                        ttl_seconds: None,
                    });
                    continue;
                }
            };
            ops.push(Op::Allocate {
                pool,
                owner: owner(name, &nic.name),
                ip,
                labels,
            });
        }
        // Retrying after an unknown outcome is safe: each owner gets its allocation back.
        let outputs = retry(self.budget, || self.ipam.batch(ops.clone()))
            .await
            .map_err(|e| classify(e, &ops))?;
        let mut allocations = Vec::with_capacity(outputs.len());
        for output in outputs {
            match output {
                OpOutput::Allocated { allocation, .. }
                | OpOutput::AllocatedV2 { allocation, .. } => allocations.push(allocation),
                other => return Err(VmError::Unexpected(format!("{other:?}"))),
            }
        }
        let configs = self.configs(nics, &allocations).await?;
        if let Err(e) = self.backend.create(name, &configs) {
            self.release(&allocations).await?;
            return Err(e.into());
        }
        Ok(Vm {
            name: name.to_string(),
            nics: sorted(configs),
        })
    }

    /// Destroys `name` in the backend and releases every address it holds (fenced by
    /// generation). Returns the released addresses.
    pub async fn delete_vm(&self, name: &str) -> Result<Vec<IpAddr>, VmError> {
        let Some(allocations) = self.find(name).await? else {
            return Err(VmError::NotFound(name.to_string()));
        };
        self.backend.destroy(name);
        self.release(&allocations).await?;
        Ok(allocations.iter().map(|a| a.ip).collect())
    }

    /// One VM, read behind the read barrier (so it reflects every acknowledged change).
    pub async fn show(&self, name: &str) -> Result<Vm, VmError> {
        let allocations = self
            .find(name)
            .await?
            .ok_or_else(|| VmError::NotFound(name.to_string()))?;
        self.vm_of(name, allocations).await
    }

    /// Every VM, by name.
    pub async fn list(&self) -> Result<Vec<Vm>, VmError> {
        let mut by_vm: BTreeMap<String, Vec<Allocation>> = BTreeMap::new();
        for allocation in self.vm_allocations(None).await? {
            if let Some((vm, _)) = parse_owner(&allocation.owner) {
                by_vm.entry(vm.to_string()).or_default().push(allocation);
            }
        }
        let mut vms = Vec::with_capacity(by_vm.len());
        for (name, allocations) in by_vm {
            vms.push(self.vm_of(&name, allocations).await?);
        }
        Ok(vms)
    }

    async fn vm_of(&self, name: &str, allocations: Vec<Allocation>) -> Result<Vm, VmError> {
        let mut nics = Vec::with_capacity(allocations.len());
        for a in allocations {
            let nic = parse_owner(&a.owner).map_or("", |(_, nic)| nic).to_string();
            nics.push(self.config(nic, &a).await?);
        }
        Ok(Vm {
            name: name.to_string(),
            nics: sorted(nics),
        })
    }

    /// The allocations of `name`'s NICs, or `None` when it holds none.
    async fn find(&self, name: &str) -> Result<Option<Vec<Allocation>>, VmError> {
        let found = self.vm_allocations(Some(name)).await?;
        Ok((!found.is_empty()).then_some(found))
    }

    /// Allocations whose owner is a NIC of `vm` (of any VM when `None`). The example finds them
    /// by the `vm` label over every pool; an orchestrator with its own VM records would keep
    /// each VM's (pool, owner) list and ask IPAM by owner instead.
    async fn vm_allocations(&self, vm: Option<&str>) -> Result<Vec<Allocation>, VmError> {
        let pools = self
            .ipam
            .pools(&Labels::new(), Consistency::Linearizable)
            .await?;
        let mut found = Vec::new();
        for pool in pools {
            let mut after = None;
            loop {
                let page = self
                    .ipam
                    .allocations(&pool.name, None, after, 1_000, Consistency::Local)
                    .await?;
                found.extend(page.allocations.into_iter().filter(|a| {
                    match (parse_owner(&a.owner), vm) {
                        (Some((owner_vm, _)), Some(vm)) => owner_vm == vm,
                        (Some(_), None) => true,
                        (None, _) => false,
                    }
                }));
                match page.next {
                    Some(next) => after = Some(next),
                    None => break,
                }
            }
        }
        Ok(found)
    }

    async fn pool_of(&self, ip: IpAddr) -> Result<String, VmError> {
        let info = self.ipam.address(ip, Consistency::Linearizable).await?;
        info.pool.ok_or(VmError::NoPool(ip))
    }

    async fn configs(
        &self,
        nics: &[NicRequest],
        allocations: &[Allocation],
    ) -> Result<Vec<NicConfig>, VmError> {
        let mut out = Vec::with_capacity(nics.len());
        for (nic, allocation) in nics.iter().zip(allocations) {
            out.push(self.config(nic.name.clone(), allocation).await?);
        }
        Ok(out)
    }

    async fn config(&self, nic: String, a: &Allocation) -> Result<NicConfig, VmError> {
        // The allocation carries its network as the pool is now; an answer without it (a
        // node of the first release) falls back to the pool's own prefix and gateway.
        if let Some(n) = &a.network {
            return Ok(NicConfig {
                nic,
                pool: a.pool.clone(),
                address: a.ip,
                prefix_len: n.prefix_len,
                gateway: n.gateway,
                generation: a.generation,
                dns: n.dns.clone(),
                domain: n.domain.clone(),
                mtu: n.mtu,
                routes: n
                    .routes
                    .iter()
                    .map(|r| (r.dst.to_string(), r.via))
                    .collect(),
            });
        }
        let pool = self.ipam.pool(&a.pool, Consistency::Local).await?;
        Ok(NicConfig {
            nic,
            pool: a.pool.clone(),
            address: a.ip,
            prefix_len: pool.cidr.prefix(),
            gateway: pool.gateway,
            generation: a.generation,
            dns: vec![],
            domain: None,
            mtu: None,
            routes: vec![],
        })
    }

    /// Releases `allocations`, each fenced by its generation. An allocation that
    /// is already gone is not an error (a retried release may have applied).
    async fn release(&self, allocations: &[Allocation]) -> Result<(), VmError> {
        for a in allocations {
            let op = Op::Release {
                pool: a.pool.clone(),
                ip: a.ip,
                generation: Some(a.generation),
            };
            match retry(self.budget, || self.ipam.batch(vec![op.clone()])).await {
                Ok(_) => {}
                Err(IpamError::Batch(b)) if matches!(b.error, OpError::Release(_)) => {
                    // Not found or another generation: this allocation is no longer ours.
                }
                Err(e) => return Err(e.into()),
            }
        }
        Ok(())
    }
}

fn sorted(mut nics: Vec<NicConfig>) -> Vec<NicConfig> {
    nics.sort_by(|a, b| a.nic.cmp(&b.nic));
    nics
}

/// Turns a failed allocation batch into what the VM's creator needs to know.
fn classify(error: IpamError, ops: &[Op]) -> VmError {
    let IpamError::Batch(batch) = &error else {
        return VmError::Ipam(error);
    };
    let pool = match ops.get(batch.index) {
        Some(Op::Allocate { pool, .. }) => pool.clone(),
        Some(Op::AllocateAny { selector, .. }) => selector
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join(","),
        _ => String::new(),
    };
    match &batch.error {
        OpError::Allocate(AllocateError::NoMatchingPool { .. }) => VmError::NoMatchingPool(pool),
        OpError::Allocate(AllocateError::NoPoolAvailable { .. }) => VmError::PoolExhausted(pool),
        OpError::Allocate(AllocateError::PoolNotFound { .. }) => VmError::PoolNotFound(pool),
        OpError::Allocate(AllocateError::Exhausted { .. }) => VmError::PoolExhausted(pool),
        OpError::Allocate(AllocateError::AddressInUse { ip, owner, .. }) => VmError::AddressTaken {
            ip: *ip,
            owner: owner.clone(),
        },
        _ => VmError::Ipam(error),
    }
}
