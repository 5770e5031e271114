//! `adeploy state export|import|migrate|sync`: the history itself.
//!
//! The history in effect is the engine's (`history.url` /
//! `ADEPLOY_HISTORY_URL`, else the redb file in the state directory);
//! `migrate` reads the state directory's redb history whatever is configured.
//! Files are JSON Lines (docs/CI.md): an export of one history imported into
//! another, of either kind, holds the same records byte for byte, and an
//! import of records already present changes nothing.

use std::fs::File;
use std::io::{BufReader, BufWriter, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context as _;
use clap::{Args, Subcommand};
use serde::Serialize;

use adeploy::config::HistoryUrl;
use adeploy::engine::{Engine, EngineOptions};
use adeploy::history::{HistoryBackend, HistoryLocation, HistoryStore, PgHistory, TransferSummary};

use crate::output::{CommandOutput, emit};
use crate::{Context, UsageError};

/// `adeploy state ...`.
#[derive(Debug, Subcommand)]
pub enum StateCommand {
    /// Write every record (deployments, decisions, samples, audit log, the
    /// model) as JSON Lines, to standard output or a file.
    Export(ExportArgs),
    /// Read JSON Lines written by `export` into the history in effect
    /// (records already there are kept, never doubled).
    Import(ImportArgs),
    /// Copy the state directory's redb history into a PostgreSQL history.
    Migrate(MigrateArgs),
    /// Send the writes waiting in the local journal (a PostgreSQL history
    /// that was unreachable during a run) to the database now.
    Sync,
}

#[derive(Debug, Args)]
pub struct ExportArgs {
    /// The file to write (replaced whole when the export is complete);
    /// standard output without it.
    #[arg(long, short = 'o', value_name = "FILE")]
    output: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct ImportArgs {
    /// A file written by `adeploy state export` (`-` for standard input).
    file: PathBuf,
}

#[derive(Debug, Args)]
pub struct MigrateArgs {
    /// The PostgreSQL history: postgres://USER@HOST:PORT/DATABASE (the
    /// password from history.password, PGPASSWORD or ~/.pgpass).
    #[arg(long, value_name = "URL")]
    to: String,
}

async fn engine(ctx: &Context) -> anyhow::Result<Engine> {
    let options = EngineOptions {
        state_dir: ctx.state_dir.clone(),
        ..EngineOptions::default()
    };
    Ok(Engine::new(ctx.config()?, options).await?)
}

pub async fn run(ctx: &Context, cmd: StateCommand) -> anyhow::Result<ExitCode> {
    let engine = engine(ctx).await?;
    match cmd {
        StateCommand::Export(args) => export(ctx, &engine, args).await,
        StateCommand::Import(args) => import(ctx, &engine, args).await,
        StateCommand::Migrate(args) => migrate(ctx, &engine, args).await,
        StateCommand::Sync => sync(ctx, &engine).await,
    }
}

/// What `export`, `import` and `migrate` did.
#[derive(Debug, Serialize)]
struct Transfer {
    /// `exported`, `imported` or `migrated`.
    action: &'static str,
    /// The history read (export, migrate) or written (import).
    history: HistoryLocation,
    /// The file written or read, or the history migrated to.
    other: String,
    records: TransferSummary,
}

impl CommandOutput for Transfer {
    fn text(&self) -> String {
        let r = &self.records;
        let (from, to) = match self.action {
            "imported" => (self.other.clone(), self.history.to_string()),
            _ => (self.history.to_string(), self.other.clone()),
        };
        format!(
            "{}: {} deployment(s), {} decision(s), {} metric sample(s), {} audit entr{}, {} blob(s)\n  from {from}\n  to   {to}\n",
            self.action,
            r.deployments,
            r.decisions,
            r.samples,
            r.audit,
            if r.audit == 1 { "y" } else { "ies" },
            r.blobs
        )
    }
}

async fn export(ctx: &Context, engine: &Engine, args: ExportArgs) -> anyhow::Result<ExitCode> {
    // An embedded history that does not exist yet exports as empty; it is
    // not created for that.
    let existing = engine.existing_history().await?;
    let empty;
    let history = match existing {
        Some(h) => h,
        None => {
            empty = Empty::new()?;
            &empty.store
        }
    };
    let location = existing.map_or_else(
        || HistoryLocation::Redb {
            path: adeploy::history::database_path(engine.state_dir()),
        },
        HistoryBackend::location,
    );
    match &args.output {
        Some(path) => {
            let summary = export_to_file(history, path).await?;
            emit(
                &Transfer {
                    action: "exported",
                    history: location,
                    other: path.display().to_string(),
                    records: summary,
                },
                ctx.json,
            )?;
        }
        None => {
            // The data goes to stdout; what was written, to stderr.
            let mut out = BufWriter::new(std::io::stdout());
            let summary = history.export(&mut out, "-").await?;
            match out.flush() {
                Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => {}
                other => other.context("writing the export to standard output")?,
            }
            let text = Transfer {
                action: "exported",
                history: location,
                other: "standard output".into(),
                records: summary,
            }
            .text();
            eprint!("{text}");
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// Writes the export to a temporary file beside `path` and renames it into
/// place: an export that fails leaves no half-written file (and an older
/// file of that name untouched).
async fn export_to_file(history: &HistoryStore, path: &Path) -> anyhow::Result<TransferSummary> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let tmp = tempfile::Builder::new()
        .prefix(".adeploy-export-")
        .tempfile_in(&dir)
        .map_err(|e| {
            UsageError(format!(
                "{}: cannot write an export there: {e}",
                dir.display()
            ))
        })?;
    let (file, tmp_path) = tmp.into_parts();
    let mut out = BufWriter::new(file);
    let summary = history
        .export(&mut out, &path.display().to_string())
        .await?;
    let file = out
        .into_inner()
        .map_err(|e| e.into_error())
        .with_context(|| format!("writing {}", path.display()))?;
    file.sync_all()
        .with_context(|| format!("writing {}", path.display()))?;
    tmp_path.persist(path).map_err(|e| {
        UsageError(format!(
            "{}: cannot write the export: {}",
            path.display(),
            e.error
        ))
    })?;
    Ok(summary)
}

/// The import's input, read twice: once to check every line, once to store.
enum Input {
    File(PathBuf),
    Buffered(Vec<u8>),
}

impl Input {
    fn open(&self, name: &str) -> anyhow::Result<Box<dyn std::io::BufRead + Send + '_>> {
        Ok(match self {
            Input::File(path) => {
                let file = File::open(path)
                    .map_err(|e| UsageError(format!("{name}: cannot read the import file: {e}")))?;
                Box::new(BufReader::new(file))
            }
            Input::Buffered(bytes) => Box::new(std::io::Cursor::new(bytes.as_slice())),
        })
    }
}

async fn import(ctx: &Context, engine: &Engine, args: ImportArgs) -> anyhow::Result<ExitCode> {
    let name = args.file.display().to_string();
    let input = if args.file.as_os_str() == "-" {
        let mut bytes = Vec::new();
        std::io::Read::read_to_end(&mut std::io::stdin(), &mut bytes)
            .map_err(|e| UsageError(format!("standard input: cannot read the import: {e}")))?;
        Input::Buffered(bytes)
    } else {
        Input::File(args.file.clone())
    };
    // Every line is checked before anything is stored (or the history is
    // even opened): a bad file is refused whole.
    adeploy::history::check_import(&mut input.open(&name)?, &name).await?;
    let history = engine.history().await?;
    let summary = history.import(&mut input.open(&name)?, &name).await?;
    if let Some(local) = history.as_local() {
        // An import replaces records in place; give the freed pages back.
        let local = local.clone();
        tokio::task::spawn_blocking(move || local.compact())
            .await
            .context("compacting the history")??;
    }
    emit(
        &Transfer {
            action: "imported",
            history: history.location(),
            other: name,
            records: summary,
        },
        ctx.json,
    )?;
    Ok(ExitCode::SUCCESS)
}

async fn migrate(ctx: &Context, engine: &Engine, args: MigrateArgs) -> anyhow::Result<ExitCode> {
    let state_dir = engine.state_dir();
    let database = adeploy::history::database_path(state_dir);
    if !database.exists() {
        return Err(UsageError(format!(
            "{}: no redb history to migrate; name the state directory that has one with --state-dir",
            database.display()
        ))
        .into());
    }
    let source = HistoryStore::open_local(state_dir).await?;
    let url = HistoryUrl::new(args.to.trim());
    let password = engine.config().history.password.as_ref();
    let target = HistoryStore::postgres(PgHistory::connect(&url, password, state_dir).await?);
    let summary = source.migrate_to(&target).await?;
    emit(
        &Transfer {
            action: "migrated",
            history: source.location(),
            other: url.redacted(),
            records: summary,
        },
        ctx.json,
    )?;
    Ok(ExitCode::SUCCESS)
}

/// What `sync` did.
#[derive(Debug, Serialize)]
struct Synced {
    history: HistoryLocation,
    /// Writes sent to the database.
    replayed: usize,
    /// Writes still waiting (the database went away again).
    pending: usize,
}

impl CommandOutput for Synced {
    fn text(&self) -> String {
        match &self.history {
            HistoryLocation::Redb { path } => format!(
                "nothing to sync: the history is the embedded database {}\n",
                path.display()
            ),
            history => {
                let mut s = format!("sent {} waiting write(s) to {history}\n", self.replayed);
                if self.pending > 0 {
                    s.push_str(&format!(
                        "{} write(s) still wait in the local journal; run `adeploy state sync` again when the database is back\n",
                        self.pending
                    ));
                }
                s
            }
        }
    }
}

async fn sync(ctx: &Context, engine: &Engine) -> anyhow::Result<ExitCode> {
    let state_dir = engine.state_dir();
    // Connecting replays the journal already; count from before.
    let before = adeploy::history::journal_pending(state_dir);
    let Some(history) = engine.existing_history().await? else {
        emit(
            &Synced {
                history: HistoryLocation::Redb {
                    path: adeploy::history::database_path(state_dir),
                },
                replayed: 0,
                pending: 0,
            },
            ctx.json,
        )?;
        return Ok(ExitCode::SUCCESS);
    };
    let report = history.sync().await?;
    let pending = report.pending;
    emit(
        &Synced {
            history: history.location(),
            replayed: before.saturating_sub(pending).max(report.replayed),
            pending,
        },
        ctx.json,
    )?;
    Ok(if pending > 0 {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}

/// An empty embedded history in a temporary directory (the export of a
/// state directory without one).
struct Empty {
    _dir: tempfile::TempDir,
    store: HistoryStore,
}

impl Empty {
    fn new() -> anyhow::Result<Empty> {
        let dir = tempfile::tempdir().context("a temporary directory")?;
        let history = adeploy::history::History::open(dir.path())?;
        let store = HistoryStore::local(history, dir.path());
        Ok(Empty { _dir: dir, store })
    }
}
