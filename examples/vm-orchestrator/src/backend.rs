//! The VM backend the orchestrator drives: a trait, and an in-memory mock that records the
//! configuration each VM was given and can be told to fail.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Mutex;

use crate::netconfig::{render_networkd, NicConfig};

/// Why the backend could not create a VM.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("backend failed to create VM {vm:?}: {reason}")]
pub struct BackendError {
    /// The VM.
    pub vm: String,
    /// What went wrong.
    pub reason: String,
}

/// Creates and destroys VMs given their NICs' network configuration.
pub trait VmBackend: Send + Sync + 'static {
    /// Creates `vm` with these NICs. On error nothing of the VM exists.
    fn create(&self, vm: &str, nics: &[NicConfig]) -> Result<(), BackendError>;
    /// Destroys `vm` (nothing happens when it does not exist).
    fn destroy(&self, vm: &str);
}

/// A backend that keeps each VM's rendered `.network` files in memory.
#[derive(Debug, Default)]
pub struct MockBackend {
    vms: Mutex<BTreeMap<String, Vec<(String, String)>>>,
    fail: Mutex<BTreeSet<String>>,
}

impl MockBackend {
    /// Makes the creation of `vm` fail (as a hypervisor out of memory would).
    pub fn fail_on(&self, vm: &str) {
        self.lock_fail().insert(vm.to_string());
    }

    /// The rendered files of `vm`: (NIC, `.network` text), in NIC order.
    pub fn files(&self, vm: &str) -> Option<Vec<(String, String)>> {
        self.lock_vms().get(vm).cloned()
    }

    /// Names of the VMs that exist.
    pub fn vms(&self) -> Vec<String> {
        self.lock_vms().keys().cloned().collect()
    }

    // A panic while holding the lock leaves plain data behind; keep serving it.
    fn lock_vms(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, Vec<(String, String)>>> {
        self.vms.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn lock_fail(&self) -> std::sync::MutexGuard<'_, BTreeSet<String>> {
        self.fail.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl VmBackend for MockBackend {
    fn create(&self, vm: &str, nics: &[NicConfig]) -> Result<(), BackendError> {
        if self.lock_fail().contains(vm) {
            return Err(BackendError {
                vm: vm.to_string(),
                reason: "injected failure".to_string(),
            });
        }
        let files = nics
            .iter()
            .map(|nic| (nic.nic.clone(), render_networkd(nic)))
            .collect();
        self.lock_vms().insert(vm.to_string(), files);
        Ok(())
    }

    fn destroy(&self, vm: &str) {
        self.lock_vms().remove(vm);
    }
}
