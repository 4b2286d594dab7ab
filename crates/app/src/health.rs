use crate::App;

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

impl App {
    pub async fn readiness(&self) -> Readiness {
        let database = self.deps.store.check_ready().await;
        Readiness {
            checks: vec![("database", database)],
        }
    }
}
