//! `ringfence demo`: two simulated pool members and the proxy on the embedded demo
//! configuration, with ready-to-paste requests.

use std::net::SocketAddr;

use crate::config::{Config, DEMO_TOML};
use crate::server::{Server, StartError};
use crate::sim;

/// The running demo: keep it alive as long as it should serve.
pub struct Demo {
    pub server: Server,
    pub members: Vec<sim::FrontEnd>,
}

#[derive(Debug, thiserror::Error)]
pub enum DemoError {
    #[error("the embedded demo configuration is invalid: {0}")]
    Config(#[from] crate::config::ConfigError),
    #[error("cannot start a simulated pool member")]
    Sim(#[source] std::io::Error),
    #[error(transparent)]
    Start(#[from] StartError),
}

/// Starts the pool and the proxy; `listen` and `admin` replace the embedded addresses.
pub async fn start(
    listen: Option<SocketAddr>,
    admin: Option<SocketAddr>,
) -> Result<Demo, DemoError> {
    let mut members = Vec::new();
    for name in ["fe1", "fe2"] {
        members.push(sim::FrontEnd::start(name).await.map_err(DemoError::Sim)?);
    }
    // The members and addresses go in as overrides, so they are validated like any setting.
    let urls: Vec<String> = members.iter().map(sim::FrontEnd::url).collect();
    let mut settings = vec![("RINGFENCE__UPSTREAM__MEMBERS", urls.join(","))];
    if let Some(l) = listen {
        settings.push(("RINGFENCE__SERVER__LISTEN", l.to_string()));
    }
    if let Some(a) = admin {
        settings.push(("RINGFENCE__ADMIN__LISTEN", a.to_string()));
    }
    let config = Config::from_toml_with(DEMO_TOML, &settings)?;
    let server = Server::start(config, None).await?;
    Ok(Demo { server, members })
}

impl Demo {
    /// What `ringfence demo` prints: the URLs and one request for each kind of answer.
    pub fn banner(&self) -> String {
        let proxy = self.server.addrs()[0];
        let base = format!("http://{proxy}/ucwa/oauth/v1/applications/192/me/callForwardingSettings/simultaneousRingSettings/simultaneousRingToContact");
        let host = "lyncweb.contoso.com";
        let long = format!("tel:+1425555{}", "0".repeat(69));
        let members: Vec<String> = self
            .members
            .iter()
            .map(|m| format!("{} {}", m.name(), m.url()))
            .collect();
        format!(
            "ringfence demo\n\
             \x20 proxy:    http://{proxy}  (organisation `contoso` for Host {host})\n\
             \x20 pool:     {}\n\
             \x20 metrics:  http://{}/metrics\n\n\
             Allowed number (204 from the pool):\n\
             \x20 curl -i -X POST -H 'Host: {host}' '{base}?target=tel:%2B14255550100'\n\n\
             Denied number (403 from ringfence, the pool never sees it):\n\
             \x20 curl -i -X POST -H 'Host: {host}' '{base}?target=tel:%2B19005550100'\n\n\
             Allowed contact in a JSON body:\n\
             \x20 curl -i -X POST -H 'Host: {host}' -H 'Content-Type: application/json' -d '{{\"target\":\"sip:helpdesk@contoso.com\"}}' '{base}'\n\n\
             81-character target (400):\n\
             \x20 curl -i -X POST -H 'Host: {host}' '{base}?target={}'\n\n\
             Metrics:\n\
             \x20 curl -s http://{}/metrics | grep ringfence_policy\n\n\
             Ctrl-C stops the demo.\n",
            members.join(", "),
            self.server.admin_addr(),
            long.replace('+', "%2B"),
            self.server.admin_addr(),
        )
    }
}
