use std::sync::Arc;

use crate::ports::Store;

/// What `/health/ready` reports, check by check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Readiness {
    pub checks: Vec<(&'static str, Result<(), String>)>,
}

impl Readiness {
    pub fn is_ready(&self) -> bool {
        self.checks.iter().all(|(_, r)| r.is_ok())
    }
}

/// Whether the service can take traffic.
#[derive(Clone)]
pub struct Health {
    store: Arc<dyn Store>,
}

impl std::fmt::Debug for Health {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Health").finish_non_exhaustive()
    }
}

impl Health {
    pub(crate) fn new(store: Arc<dyn Store>) -> Self {
        Self { store }
    }

    pub async fn readiness(&self) -> Readiness {
        let database = self.store.check_ready().await;
        Readiness {
            checks: vec![("database", database)],
        }
    }
}
