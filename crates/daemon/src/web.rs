//! The web configuration in force (`[http] web_config_file`): the TLS acceptor new connections
//! get and the users requests are checked against. Loaded whole at start (an error stops the
//! daemon) and again on SIGHUP, where an error keeps the running one.

use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

use anyhow::Context as _;
use tokio_rustls::TlsAcceptor;
use tracing::{error, info, warn};

use crate::auth::Users;
use crate::server::Stats;
use crate::webconfig::WebConfig;

/// One loaded web configuration.
#[derive(Default)]
pub struct Loaded {
    pub tls: Option<TlsAcceptor>,
    pub users: Option<Arc<Users>>,
}

impl std::fmt::Debug for Loaded {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let (scheme, users) = self.describe();
        f.debug_struct("Loaded")
            .field("scheme", &scheme)
            .field("users", &users)
            .finish()
    }
}

impl Loaded {
    /// Reads `path` and every file it names.
    pub fn load(path: &Path) -> anyhow::Result<Loaded> {
        let cfg = WebConfig::load(path)?;
        let ctx = || format!("web configuration {}", path.display());
        let tls = match &cfg.tls {
            Some(t) => Some(crate::tls::acceptor(t).with_context(ctx)?),
            None => None,
        };
        let users = Users::new(cfg.users).with_context(ctx)?.map(Arc::new);
        Ok(Loaded { tls, users })
    }

    fn describe(&self) -> (&'static str, usize) {
        let scheme = if self.tls.is_some() { "https" } else { "http" };
        (scheme, self.users.as_ref().map_or(0, |u| u.len()))
    }
}

/// What the server and the auth middleware read.
#[derive(Debug)]
pub struct Active {
    path: Option<PathBuf>,
    now: RwLock<Arc<Loaded>>,
    pub stats: Arc<Stats>,
}

impl Active {
    /// Loads `path` (None: plain HTTP, no authentication).
    pub fn start(path: Option<&Path>, stats: Arc<Stats>) -> anyhow::Result<Active> {
        let loaded = match path {
            Some(p) => Loaded::load(p)?,
            None => Loaded::default(),
        };
        if let Some(p) = path {
            let (scheme, users) = loaded.describe();
            info!(file = %p.display(), scheme, users, "web configuration");
            if scheme == "http" && users > 0 {
                warn!(file = %p.display(), "basic_auth_users without tls_server_config: passwords cross the network in clear");
            }
        }
        Ok(Active {
            path: path.map(Path::to_path_buf),
            now: RwLock::new(Arc::new(loaded)),
            stats,
        })
    }

    /// SIGHUP: read the file again; on an error the running configuration stays. Whether it
    /// was read (true when there is no file).
    pub fn reload(&self) -> bool {
        let Some(path) = &self.path else { return true };
        match Loaded::load(path) {
            Ok(l) => {
                let (scheme, users) = l.describe();
                *self.now.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(l);
                info!(file = %path.display(), scheme, users, "SIGHUP: web configuration reloaded");
                true
            }
            Err(e) => {
                error!(error = %format!("{e:#}"), "SIGHUP: web configuration not reloaded; the running one stays");
                false
            }
        }
    }

    fn current(&self) -> Arc<Loaded> {
        self.now.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// The acceptor for a connection accepted now.
    pub fn tls(&self) -> Option<TlsAcceptor> {
        self.current().tls.clone()
    }

    pub fn users(&self) -> Option<Arc<Users>> {
        self.current().users.clone()
    }
}
