//! Reads the origin-credentials Secrets ClusteredStreams name, with `get` by name and a short
//! cache, so the operator needs no `list`/`watch` on Secrets (which would hold every Secret of
//! the cluster in memory) and only `get`, which the chart grants when asked to.
//!
//! A Secret is read again once its cached copy is older than [`SECRET_TTL`], so a rotation
//! reaches the probes within about that time (plus the instance's requeue). A transient
//! failure to read it (the API server unreachable) keeps the last good copy; a Secret that is
//! gone, forbidden or malformed is an error at once.

use crate::probe::credentials::{self, CredentialsError, OriginCredentials};
use crate::resources::OriginCredentialsSpec;
use k8s_openapi::api::core::v1::Secret;
use kube::Api;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// How long a Secret read is trusted.
pub const SECRET_TTL: Duration = Duration::from_secs(30);

/// (namespace, Secret name, header name).
type Key = (String, String, Option<String>);

struct Entry {
    at: Instant,
    result: Result<Arc<OriginCredentials>, CredentialsError>,
}

/// The cache. One per operator.
#[derive(Default)]
pub struct SecretCache {
    entries: Mutex<HashMap<Key, Entry>>,
}

impl SecretCache {
    /// The credentials `spec` names in namespace `ns`: `Ok(None)` without a spec.
    pub async fn credentials(
        &self,
        client: &kube::Client,
        ns: &str,
        spec: Option<&OriginCredentialsSpec>,
    ) -> Result<Option<Arc<OriginCredentials>>, CredentialsError> {
        let Some(spec) = spec else {
            return Ok(None);
        };
        let key = (
            ns.to_owned(),
            spec.secret_name.clone(),
            spec.header_name.clone(),
        );
        if let Some(e) = self.lock().get(&key)
            && e.at.elapsed() < SECRET_TTL
        {
            return e.result.clone().map(Some);
        }
        let api: Api<Secret> = Api::namespaced(client.clone(), ns);
        let name = &spec.secret_name;
        let result = match api.get_opt(name).await {
            Ok(Some(secret)) => {
                credentials::parse_secret(name, &secret, spec.header_name.as_deref()).map(Arc::new)
            }
            Ok(None) => Err(CredentialsError::NotFound(name.clone())),
            Err(kube::Error::Api(s)) if s.code == 403 => {
                Err(CredentialsError::Forbidden(name.clone()))
            }
            Err(e) => {
                // Transient: keep the last good copy, if any, and try again after the TTL.
                let mut entries = self.lock();
                if let Some(entry) = entries.get_mut(&key)
                    && entry.result.is_ok()
                {
                    tracing::warn!(namespace = ns, secret = %name, error = %e, "reading the origin-credentials Secret failed; using the last copy read");
                    entry.at = Instant::now();
                    return entry.result.clone().map(Some);
                }
                Err(CredentialsError::Unreadable {
                    secret: name.clone(),
                    why: e.to_string(),
                })
            }
        };
        let mut entries = self.lock();
        if entries.len() >= 1024 {
            entries.retain(|_, e| e.at.elapsed() < SECRET_TTL * 10);
        }
        entries.insert(
            key,
            Entry {
                at: Instant::now(),
                result: result.clone(),
            },
        );
        result.map(Some)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<Key, Entry>> {
        self.entries.lock().unwrap_or_else(|p| p.into_inner())
    }
}
