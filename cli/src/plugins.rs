//! `adeploy plugins list|inspect`.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context as _;
use clap::Subcommand;
use serde::Serialize;

use adeploy::config::Grants;
use adeploy::plugin::{
    HostOptions, Inspection, LoadStats, PluginHost, PluginKind, PluginSet, grants_summary,
};

use crate::Context;
use crate::output::{CommandOutput, emit, safe, table};
use crate::scaffold::{Lang, ScaffoldRequest, Scaffolded, scaffold};

#[derive(Debug, Subcommand)]
pub enum PluginsCommand {
    /// Every plugin adeploy would use: built-ins, --plugins directories and the config's paths.
    List {
        /// A directory of plugin components (NAME.wasm, optional NAME.toml manifest); repeatable.
        #[arg(long = "plugins", value_name = "DIR")]
        dirs: Vec<PathBuf>,
    },
    /// Describe one component file: its world, imports, exports and manifest.
    Inspect {
        /// The component (.wasm).
        path: PathBuf,
    },
    /// Create a plugin project (WIT, manifest, README, ./build.sh) to start from.
    New {
        /// The plugin's name: lowercase letters, digits and single dashes.
        name: String,
        /// What the plugin is.
        #[arg(long, value_enum)]
        kind: KindArg,
        /// The language it is written in.
        #[arg(long, value_enum)]
        lang: LangArg,
        /// The project directory to create (default: ./NAME); it must not exist.
        #[arg(long, value_name = "D")]
        dir: Option<PathBuf>,
    },
}

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum KindArg {
    Strategy,
    Detector,
    Hook,
    MetricProvider,
}

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum LangArg {
    Rust,
    Js,
    Python,
}

pub async fn run(ctx: &Context, cmd: PluginsCommand) -> anyhow::Result<ExitCode> {
    match cmd {
        PluginsCommand::List { dirs } => {
            let config = ctx.config()?;
            let host = PluginHost::new(HostOptions::for_config(&config))?;
            let set = PluginSet::load(&host, &config, &dirs)
                .await
                .context("loading plugins")?;
            let list = PluginList {
                plugins: set
                    .iter()
                    .map(|p| PluginRow {
                        name: p.name().to_string(),
                        kind: p.kind(),
                        version: p.info().version.clone(),
                        description: p.info().description.clone(),
                        source: p.source().to_string(),
                        builtin: matches!(p.source(), adeploy::plugin::PluginSource::BuiltIn),
                        overrides: p
                            .overrides_builtin()
                            .then(|| format!("built-in {}", p.name())),
                        grants_withheld: p.grants_withheld().map(String::from),
                        sha256: p.sha256().to_string(),
                        wit_version: p.wit_version().to_string(),
                        grants: p.grants().clone(),
                        requested_grants: p.manifest().map(|m| m.grants.clone()),
                        missing_grants: p.missing_grants(),
                        load: p.load_stats(),
                    })
                    .collect(),
            };
            emit(&list, ctx.json)?;
        }
        PluginsCommand::Inspect { path } => {
            let host = PluginHost::new(HostOptions::default())?;
            let inspection = host.inspect(&path).await?;
            emit(&InspectOutput(inspection), ctx.json)?;
        }
        PluginsCommand::New {
            name,
            kind,
            lang,
            dir,
        } => {
            let req = ScaffoldRequest {
                dir: dir.unwrap_or_else(|| PathBuf::from(&name)),
                name,
                kind: match kind {
                    KindArg::Strategy => PluginKind::Strategy,
                    KindArg::Detector => PluginKind::Detector,
                    KindArg::Hook => PluginKind::Hook,
                    KindArg::MetricProvider => PluginKind::MetricProvider,
                },
                lang: match lang {
                    LangArg::Rust => Lang::Rust,
                    LangArg::Js => Lang::Js,
                    LangArg::Python => Lang::Python,
                },
            };
            emit(&NewOutput(scaffold(&req)?), ctx.json)?;
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// `plugins list --json`: `{"plugins": [...]}`.
#[derive(Debug, Serialize)]
struct PluginList {
    plugins: Vec<PluginRow>,
}

#[derive(Debug, Serialize)]
struct PluginRow {
    name: String,
    kind: PluginKind,
    version: String,
    description: String,
    /// `built-in` or the component's path.
    source: String,
    builtin: bool,
    /// What this file replaces (`built-in NAME`), when it replaces a built-in.
    overrides: Option<String>,
    /// Why the config's grants for this name were not given to the file.
    grants_withheld: Option<String>,
    sha256: String,
    wit_version: String,
    grants: Grants,
    /// What the manifest asks for, when there is a manifest.
    requested_grants: Option<Grants>,
    /// What the manifest asks for and the config does not grant (these stay denied).
    missing_grants: Grants,
    load: LoadStats,
}

impl CommandOutput for PluginList {
    fn text(&self) -> String {
        let rows = self
            .plugins
            .iter()
            .map(|p| {
                vec![
                    safe(&p.name).into_owned(),
                    p.kind.to_string(),
                    safe(&p.version).into_owned(),
                    safe(&p.source).into_owned(),
                    p.sha256.chars().take(12).collect(),
                    safe(&grants_summary(&p.grants)).into_owned(),
                ]
            })
            .collect();
        let mut out = table(
            &["NAME", "KIND", "VERSION", "SOURCE", "SHA256", "GRANTS"],
            rows,
        );
        for p in &self.plugins {
            if let Some(what) = &p.overrides {
                out.push_str(&format!(
                    "{}: {} replaces the {what}{}\n",
                    safe(&p.name),
                    safe(&p.source),
                    p.grants_withheld
                        .as_deref()
                        .map(|w| format!("; it runs without grants: {}", safe(w)))
                        .unwrap_or_default()
                ));
            }
        }
        for p in self.plugins.iter().filter(|p| !p.missing_grants.is_empty()) {
            out.push_str(&format!(
                "{}: its manifest asks for {}, which the config does not grant (denied until plugins.{}.grants lists them)\n",
                safe(&p.name),
                safe(&grants_summary(&p.missing_grants)),
                safe(&p.name)
            ));
        }
        out
    }
}

#[derive(Debug, Serialize)]
#[serde(transparent)]
struct InspectOutput(Inspection);

impl CommandOutput for InspectOutput {
    fn text(&self) -> String {
        let i = &self.0;
        let mut s = format!(
            "name:        {}\nkind:        {}\nworld:       {}\nversion:     {}\ndescription: {}\nsha256:      {}\nsize:        {} bytes\n",
            safe(&i.name),
            i.kind,
            i.world,
            safe(&i.version),
            safe(&i.description),
            i.sha256,
            i.size
        );
        s.push_str("imports:\n");
        for imp in &i.imports {
            s.push_str(&format!("  {}\n", safe(imp)));
        }
        s.push_str("exports:\n");
        for exp in &i.exports {
            s.push_str(&format!("  {}\n", safe(exp)));
        }
        match &i.manifest {
            Some(m) => s.push_str(&format!(
                "manifest:    {} (name {}, kind {}, grants asked: {})\n",
                safe(&m.path.display().to_string()),
                safe(&m.name),
                m.kind,
                safe(&grants_summary(&m.grants))
            )),
            None => s.push_str("manifest:    none\n"),
        }
        s
    }
}

#[derive(Debug, Serialize)]
#[serde(transparent)]
struct NewOutput(Scaffolded);

impl CommandOutput for NewOutput {
    fn text(&self) -> String {
        let s = &self.0;
        let dir = s.dir.display();
        format!(
            "created {} ({} plugin in {}) in {dir}\nbuild:   cd {dir} && {}\nthen:    adeploy plugins inspect {}\n",
            s.name,
            s.kind,
            s.lang,
            s.build_command,
            s.component.display()
        )
    }
}
