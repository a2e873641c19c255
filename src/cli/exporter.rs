//! `diagproxy exporter`: the flags and the `--config` file's modules turned into
//! `exporter::Module`s (each a checked `Config` with its route discovered), the listener
//! bound (loopback unless `--allow-remote` with credentials), then served until Ctrl-C.

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;

use serde::Deserialize;

use super::{ExporterArgs, Failed, RouteArgs};
use crate::exporter::{Auth, Exporter, Module};

/// A `--config` file: `[modules.NAME]` tables overriding the flags.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct ConfigFile {
    #[serde(default)]
    modules: BTreeMap<String, ModuleFile>,
}

/// One module: every field optional, the flags' value when absent.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct ModuleFile {
    upstream_proxy: Option<String>,
    upstream_auth: Option<String>,
    stage_timeout: Option<String>,
    voice: Option<String>,
    resolve: Option<Vec<String>>,
    public_roots: Option<PathBuf>,
    system_roots: Option<PathBuf>,
}

/// The most modules a `--config` file may define.
pub const MAX_MODULES: usize = 64;

pub fn exporter(args: &ExporterArgs) -> Result<(), Failed> {
    let listen: std::net::SocketAddr = args
        .listen
        .parse()
        .map_err(|e| Failed::Usage(format!("--listen {}: {e}", args.listen)))?;
    let auth = auth(args)?;
    if !listen.ip().is_loopback() && (!args.allow_remote || auth.is_none()) {
        return Err(Failed::Usage(format!(
            "--listen {listen} is reachable from other machines: add --allow-remote and --auth USER:PASS or --bearer-token-file FILE"
        )));
    }
    let file = read_config(args)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| Failed::error(&e))?;
    runtime.block_on(async {
        let mut modules = HashMap::new();
        modules.insert("default".to_string(), module(args, &ModuleFile::default()).await?);
        for (name, m) in &file.modules {
            let built = module(args, m)
                .await
                .map_err(|e| Failed::Usage(format!("--config module {name}: {e}")))?;
            modules.insert(name.clone(), built);
        }
        let listener = tokio::net::TcpListener::bind(listen)
            .await
            .map_err(|e| Failed::Error(format!("--listen {listen}: {e}")))?;
        let bound = listener.local_addr().map_err(|e| Failed::error(&e))?;
        eprintln!(
            "diagproxy exporter listening on http://{bound}/probe?target=HOST (modules: {}); Ctrl-C ends it",
            module_names(&modules)
        );
        // Start-up is over: its code need not stay mapped (see `resident`).
        let released = crate::resident::release_startup_pages();
        tracing::debug!("gave back {} KiB of start-up pages", released >> 10);
        let stop = async {
            let _ = tokio::signal::ctrl_c().await;
        };
        crate::exporter::run(listener, Exporter { modules, auth }, stop).await;
        Ok(())
    })
}

fn module_names(modules: &HashMap<String, Module>) -> String {
    let mut names: Vec<&str> = modules.keys().map(String::as_str).collect();
    names.sort_unstable();
    names.join(", ")
}

fn auth(args: &ExporterArgs) -> Result<Option<Auth>, Failed> {
    use base64::Engine;
    if let Some(pair) = &args.auth {
        if !pair.contains(':') {
            return Err(Failed::Usage("--auth: expected USER:PASS".into()));
        }
        let encoded = base64::engine::general_purpose::STANDARD.encode(pair);
        return Ok(Some(Auth::Header(format!("Basic {encoded}"))));
    }
    let Some(path) = &args.bearer_token_file else {
        return Ok(None);
    };
    let token = std::fs::read_to_string(path)
        .map_err(|e| Failed::Usage(format!("--bearer-token-file {}: {e}", path.display())))?;
    let token = token.trim();
    if token.is_empty() {
        return Err(Failed::Usage(
            "--bearer-token-file: the file is empty".into(),
        ));
    }
    Ok(Some(Auth::Header(format!("Bearer {token}"))))
}

fn read_config(args: &ExporterArgs) -> Result<ConfigFile, Failed> {
    let Some(path) = &args.config else {
        return Ok(ConfigFile::default());
    };
    let text = std::fs::read_to_string(path)
        .map_err(|e| Failed::Usage(format!("--config {}: {e}", path.display())))?;
    let file: ConfigFile = toml::from_str(&text)
        .map_err(|e| Failed::Usage(format!("--config {}: {e}", path.display())))?;
    if file.modules.len() > MAX_MODULES {
        return Err(Failed::Usage(format!(
            "--config: at most {MAX_MODULES} modules"
        )));
    }
    if file.modules.contains_key("default") {
        return Err(Failed::Usage(
            "--config: `default` is the flags' module; name yours otherwise".into(),
        ));
    }
    Ok(file)
}

/// The flags with a module's overrides, as a checked configuration with its route found.
async fn module(args: &ExporterArgs, m: &ModuleFile) -> Result<Module, Failed> {
    let args = &args.probe;
    let mut route: RouteArgs = args.route.clone();
    if let Some(p) = &m.upstream_proxy {
        route.upstream_proxy = p.clone();
    }
    if let Some(a) = &m.upstream_auth {
        route.auth.upstream_auth = a.clone();
    }
    if let Some(pins) = &m.resolve {
        route.resolve = pins.clone();
    }
    let stage_timeout = m.stage_timeout.as_deref().unwrap_or(&args.stage_timeout);
    let roots = [
        m.public_roots.as_deref().or(args.public_roots.as_deref()),
        m.system_roots.as_deref().or(args.system_roots.as_deref()),
    ];
    let config = super::pac::route_config(&route, stage_timeout, roots)?;
    let stage_timeout = crate::config::parse_duration("stage_timeout", stage_timeout)
        .map_err(|e| Failed::Usage(e.to_string()))?;
    let router = crate::upstream::discover::router(&config, config.listen).await;
    let config = config.with_router(router);
    let voice = super::check::voice_from(m.voice.as_deref().or(args.voice.as_deref()), &config)?;
    Ok(Module {
        config,
        stage_timeout,
        voice,
    })
}
