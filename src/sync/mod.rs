//! `roster sync`: the input is the whole truth for a target. New people are created (the
//! import pipeline, unchanged), people whose values changed since roster last sent them are
//! updated, people the ledger knows who are absent are leavers — reported, deactivated or
//! deleted per `--leavers`, behind safeguards that hold the leaver step back when the input
//! looks damaged or too many would go.
//!
//! A sync is computed first as a [`plan::Plan`] from the input and the ledger alone, so that
//! `--dry-run --plan` shows exactly what a run would do and `--apply` runs exactly that.

mod execute;
pub mod pg_state;
pub mod plan;
pub mod scan;
pub mod state;

use crate::error::RunError;
use crate::ledger::LedgerLocation;
use crate::model::Stop;
use crate::pipeline::{self, ImportSettings, RunMode, RunResult};
use crate::targets::Target;
use crate::targets::lifecycle::Action;
use execute::{Executor, Job};
use plan::{LeaverMode, LeaverRules, Plan, Planned};
use serde::Serialize;
use state::{ChangeEnd, Known, SyncState, SyncStore, fields_of, kept_values};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// The exit code of a sync whose leaver step a safeguard held back (creates and updates
/// ran): look at the message, then re-run, or raise `--max-leavers` if the leavers are real.
pub const EXIT_LEAVERS_HELD: i32 = 6;

/// What `roster sync` adds to an import's settings.
#[derive(Debug, Clone)]
pub struct SyncOptions {
    /// Whether absent people are leavers (`sync`), or the file may be a delta and only
    /// creates and updates run (`import --update`).
    pub leaver_step: bool,
    /// Leavers: what, how many, after how many absences.
    pub rules: LeaverRules,
    /// `--plan FILE`: write the plan here.
    pub plan: Option<PathBuf>,
    /// `--apply FILE.json`: run exactly this plan.
    pub apply: Option<PathBuf>,
}

impl SyncOptions {
    /// `import --update`: creates and updates only (the file may be a delta, so nobody is
    /// a leaver and the run is no baseline for the next sync's damage checks).
    pub fn updates_only() -> SyncOptions {
        SyncOptions {
            leaver_step: false,
            rules: LeaverRules {
                mode: LeaverMode::Report,
                limit: plan::LeaverLimit::Default,
                after: 1,
            },
            plan: None,
            apply: None,
        }
    }
}

/// A sync's own totals, beside the import summary's.
#[derive(Debug, Clone, Default, Serialize)]
pub struct SyncSummary {
    /// People updated (or, in a dry run, to update).
    pub updated: u64,
    /// People found with nothing to change.
    pub unchanged: u64,
    /// People absent long enough to be leavers.
    pub leavers: u64,
    /// People absent, not yet long enough.
    pub pending_leavers: u64,
    /// Leavers disabled.
    pub deactivated: u64,
    /// People back after a deactivation, enabled again.
    pub reactivated: u64,
    /// Leavers deleted.
    pub deleted: u64,
    /// Changes that failed or were refused (see the leavers file and the ledger's history).
    pub change_failures: u64,
    /// Changes sent (updates, reactivations, deactivations, deletions), lookups and reads
    /// before a change not counted.
    pub changes_sent: u64,
    /// Why the leaver step was held back, if it was.
    pub held: Vec<String>,
    /// A note on what the target could not do (no deactivation: reported instead).
    pub notes: Vec<String>,
    /// Where the leavers were listed.
    pub leavers_file: Option<String>,
    /// A dry run: the counts are what a sync would do.
    #[serde(skip)]
    pub dry_run: bool,
}

impl SyncSummary {
    /// The summary's lines for people.
    pub fn render(&self) -> String {
        if self.dry_run {
            return format!(
                "  sync (dry run, nothing sent): would update {}, {} unchanged, {} leavers, {} pending leavers, would reactivate {}\n{}",
                self.updated,
                self.unchanged,
                self.leavers,
                self.pending_leavers,
                self.reactivated,
                self.held
                    .iter()
                    .map(|why| format!("  leaver step would be held back: {why}\n"))
                    .chain(self.notes.iter().map(|n| format!("  note: {n}\n")))
                    .collect::<String>()
            );
        }
        let mut out = format!(
            "  sync: {} changes sent: {} updated, {} unchanged, {} leavers ({} deactivated, {} deleted), {} pending leavers, {} reactivated",
            self.changes_sent,
            self.updated,
            self.unchanged,
            self.leavers,
            self.deactivated,
            self.deleted,
            self.pending_leavers,
            self.reactivated
        );
        if self.change_failures > 0 {
            out.push_str(&format!(", {} changes failed", self.change_failures));
        }
        out.push('\n');
        for note in &self.notes {
            out.push_str(&format!("  note: {note}\n"));
        }
        if let Some(file) = &self.leavers_file {
            out.push_str(&format!("  leavers listed in {file}\n"));
        }
        for why in &self.held {
            out.push_str(&format!("  leaver step held back: {why}\n"));
        }
        out
    }
}

/// The leavers report beside the input: `people.csv` → `people.leavers.csv`.
pub fn leavers_path(input: &Path) -> PathBuf {
    let stem = input
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|| "input".into());
    input.with_file_name(format!("{stem}.leavers.csv"))
}

/// Runs one sync (or its dry run) to the end.
pub async fn run(
    settings: &ImportSettings,
    target: Arc<Target>,
    options: &SyncOptions,
    stop: Arc<Stop>,
) -> Result<(RunResult, SyncSummary), RunError> {
    if settings.stdin.is_some() {
        return Err(RunError::Usage(
            "roster sync reads its input twice (once to plan, once to create): give a file, not `-`"
                .into(),
        ));
    }
    let dry_run = settings.mode == RunMode::DryRun;
    // Nothing is written before every output, the plan and the leavers file included, is
    // known not to be the input, a file of the ledger or another output.
    let leavers_file = leavers_path(&settings.input);
    let mut named: Vec<(&str, &Path)> = vec![("--errors", settings.errors.as_path())];
    if let Some(report) = &settings.report {
        named.push(("--report", report));
    }
    if let Some(passwords) = &settings.generate_passwords {
        named.push(("--generate-passwords", passwords));
    }
    if let Some((results, _)) = &settings.results {
        named.push(("--results", results));
    }
    if let Some(plan) = &options.plan {
        named.push(("--plan", plan));
    }
    if options.leaver_step && !dry_run {
        named.push(("the leavers file", &leavers_file));
    }
    crate::report::outputs::check(&settings.input, settings.ledger.sqlite_path(), &named)?;
    let key = target.ledger_key().to_string();
    // One sync per ledger from its plan to its last change: the create step runs under the
    // same lock, so no other run can change the ledger between the plan and its changes.
    let mut settings = settings.clone();
    let location = settings.ledger.clone();
    if let (false, LedgerLocation::Sqlite(path)) = (dry_run, &location) {
        settings.ledger_lock = Some(Arc::new(crate::ledger::lock::LedgerLock::acquire(path)?));
    }
    let scan = scan::scan(&settings, &target)?;
    // A dry run plans from a copy of a SQLite ledger (and only reads a PostgreSQL one);
    // a sync keeps its store, and on PostgreSQL the target's lock in it, to the end.
    let scratch = tempfile::tempdir().map_err(|e| RunError::Startup(e.to_string()))?;
    let store: Option<Box<dyn SyncStore>> = match &location {
        LedgerLocation::Sqlite(path) => match (path.exists(), dry_run) {
            (false, _) => None,
            (true, false) => Some(Box::new(SyncState::open(path, &key)?)),
            (true, true) => {
                let copy = crate::ledger::snapshot(path, scratch.path())?;
                Some(Box::new(SyncState::open(&copy, &key)?))
            }
        },
        LedgerLocation::Postgres(pg) => {
            // The create step runs in a session of its own under this session's lock.
            settings.pg_lock_held = !dry_run;
            Some(Box::new(pg_state::PgSyncState::open(pg, &key, !dry_run)?))
        }
    };
    let settings = &settings;
    let (known, baseline, fingerprint) = match &store {
        None => (Vec::new(), None, "empty".to_string()),
        Some(state) => {
            if !dry_run {
                state.close_unsettled()?;
            }
            (state.known()?, state.baseline()?, state.fingerprint()?)
        }
    };
    let (mut actions, mut held, unchanged, limit) =
        plan::compute(&scan, &known, baseline.as_ref(), &target, options.rules);
    if !options.leaver_step {
        actions.retain(|a| !matches!(a, Planned::Leaver { .. } | Planned::Pending { .. }));
        held.clear();
    }
    // A target that cannot update others (cl2c) skips its changes, and says so: they are
    // not failures to retry every night.
    let mut notes = Vec::new();
    let api = target.api()?.clone();
    if let Err(why) = probe(api.as_ref(), Action::Update) {
        let skipped = actions
            .iter()
            .filter(|a| matches!(a, Planned::Update { .. }))
            .count();
        actions.retain(|a| !matches!(a, Planned::Update { .. }));
        notes.push(format!(
            "target `{}`: {why}; {skipped} changed people are not updated",
            target.name()
        ));
    }
    let plan = Plan {
        notes,
        version: env!("CARGO_PKG_VERSION").into(),
        target: key.clone(),
        input: settings.input.display().to_string(),
        input_sha256: scan.sha256.clone(),
        ledger_fingerprint: fingerprint,
        leavers_mode: options.rules.mode,
        leaver_limit: limit,
        known: known.len() as u64,
        rows: scan.rows,
        held,
        actions,
        unchanged,
    };
    if let Some(path) = &options.apply {
        check_applicable(path, &plan)?;
    }
    if let Some(path) = &options.plan {
        plan::write(&plan, path)?;
    }
    let (_, updates, reactivations, leavers, pending) = plan.counts();
    let mut summary = SyncSummary {
        updated: updates,
        unchanged: plan.unchanged,
        leavers,
        pending_leavers: pending,
        reactivated: reactivations,
        held: plan.held.clone(),
        notes: plan.notes.clone(),
        ..SyncSummary::default()
    };
    if dry_run {
        summary.dry_run = true;
        let result = pipeline::run(settings, target.clone(), stop).await?;
        return Ok((result, summary));
    }
    // People deleted at the target and back in the input are created again.
    if let Some(state) = &store {
        let known_by: BTreeMap<&str, &Known> =
            known.iter().map(|k| (k.identity.as_str(), k)).collect();
        for action in &plan.actions {
            if let Planned::Create { identity, .. } = action
                && known_by
                    .get(identity.as_str())
                    .is_some_and(|k| k.status == "deleted")
            {
                state.release_for_create(identity)?;
            }
        }
    }
    let result = pipeline::run(settings, target.clone(), stop).await?;
    if result.stopped.is_some() {
        // Nothing of the plan's changes was sent: the summary says so, not what was planned.
        let summary = SyncSummary {
            notes: vec![
                "the create step stopped early: no update or leaver change was sent".into(),
            ],
            ..SyncSummary::default()
        };
        return Ok((result, summary));
    }
    let state: Box<dyn SyncStore> = match (store, &location) {
        (Some(store), _) => store,
        (None, LedgerLocation::Sqlite(path)) => Box::new(SyncState::open(path, &key)?),
        (None, LedgerLocation::Postgres(_)) => {
            return Err(RunError::Internal(
                "the sync's PostgreSQL store was not opened".into(),
            ));
        }
    };
    let run = state.start_run(&plan.input, scan.rows, &sorted(&scan.headers))?;
    // What the creates just sent is the first baseline of each new person.
    let after_create: BTreeMap<String, Known> = state
        .known()?
        .into_iter()
        .map(|k| (k.identity.clone(), k))
        .collect();
    for action in &plan.actions {
        if let Planned::Create {
            identity, fields, ..
        } = action
            && after_create
                .get(identity)
                .is_some_and(|k| k.state == "created")
        {
            state.record_sent(identity, fields)?;
        }
    }
    if options.leaver_step {
        state.count_absences(&scan.present, &known)?;
    }
    let executor = Executor {
        api: api.as_ref(),
        auth: api.auth(),
        submit: settings.submit,
        state: state.as_ref(),
        run,
        client: crate::http::Client::new(settings.submit.timeout)
            .map_err(|e| RunError::Startup(e.to_string()))?,
    };
    let sent_before: BTreeMap<&str, BTreeMap<String, String>> = known
        .iter()
        .filter_map(|k| Some((k.identity.as_str(), k.sent.clone()?)))
        .collect();
    let mut jobs = Vec::new();
    for action in &plan.actions {
        let remote = |identity: &str, planned: &Option<String>| {
            after_create
                .get(identity)
                .and_then(|k| k.remote_id.clone())
                .or_else(|| planned.clone())
        };
        match action {
            Planned::Update {
                identity,
                remote_id,
                changes,
                ..
            } => {
                let Some(person) = scan.people.get(identity) else {
                    continue;
                };
                let sent = sent_before.get(identity.as_str());
                let before = sent.map(fields_of).unwrap_or_default();
                let detail: BTreeMap<&str, [Option<&str>; 2]> = changes
                    .iter()
                    .map(|c| (c.field.as_str(), [c.before.as_deref(), c.after.as_deref()]))
                    .collect();
                // What was sent over what had been: an emptied cell cleared nothing.
                let mut record = sent.cloned().unwrap_or_default();
                record.extend(kept_values(&person.fields));
                jobs.push(Job {
                    record,
                    identity: identity.clone(),
                    remote_id: remote(identity, remote_id),
                    action: Action::Update,
                    before: body_json(&target, &before),
                    after: body_json(&target, &person.fields),
                    fields: person.fields.clone(),
                    detail: serde_json::to_string(&detail).unwrap_or_default(),
                });
            }
            Planned::Reactivate {
                identity,
                remote_id,
            } => jobs.push(status_job(
                identity,
                remote(identity, remote_id),
                Action::Reactivate,
                &scan,
            )),
            _ => {}
        }
    }
    // Reactivations first: an update of a disabled user may be refused.
    jobs.sort_by_key(|j| j.action != Action::Reactivate);
    let (done, fatal) = executor.run(jobs).await;
    let failures = |done: &[execute::Done], action: Action| {
        done.iter()
            .filter(|d| d.job.action == action && d.end != ChangeEnd::Done)
            .count() as u64
    };
    summary.updated -= failures(&done, Action::Update);
    summary.reactivated -= failures(&done, Action::Reactivate);
    summary.change_failures = done.iter().filter(|d| d.end != ChangeEnd::Done).count() as u64;
    summary.changes_sent = done.len() as u64;
    let gone = done.iter().filter(|d| d.end == ChangeEnd::Gone).count();
    if gone > 0 {
        summary.notes.push(format!(
            "{gone} people the ledger holds are no longer at the target (deleted there): the next sync creates them again"
        ));
    }
    if let Some(execute::Fatal(message)) = fatal {
        state.finish_run(run, Some("stopped before the leaver step"))?;
        return Err(RunError::Aborted(message));
    }
    // The leavers.
    let mut outcomes: BTreeMap<String, String> = BTreeMap::new();
    let leaver_action = match options.rules.mode {
        LeaverMode::Report => None,
        LeaverMode::Deactivate => Some(Action::Deactivate),
        LeaverMode::Delete => Some(Action::Delete),
    };
    if !options.leaver_step {
        // A delta file is no baseline for the next sync's damage checks.
        state.finish_run(run, Some("import --update: no leaver step"))?;
        return Ok((result, summary));
    }
    if let (Some(action), true) = (leaver_action, plan.held.is_empty()) {
        match probe(api.as_ref(), action) {
            Err(why) => {
                summary.notes.push(format!(
                    "target `{}`: {why}; the leavers are reported instead",
                    target.name()
                ));
            }
            Ok(_) => {
                let jobs: Vec<Job> = plan
                    .actions
                    .iter()
                    .filter_map(|a| match a {
                        Planned::Leaver {
                            identity,
                            remote_id,
                            ..
                        } => Some(status_job(identity, remote_id.clone(), action, &scan)),
                        _ => None,
                    })
                    .collect();
                let (done, fatal) = executor.run(jobs).await;
                summary.changes_sent += done.len() as u64;
                for d in &done {
                    let word = match (action, d.end) {
                        (Action::Deactivate, ChangeEnd::Done) => {
                            summary.deactivated += 1;
                            "deactivated".to_string()
                        }
                        (Action::Delete, ChangeEnd::Done | ChangeEnd::Gone) => {
                            summary.deleted += 1;
                            "deleted".to_string()
                        }
                        _ => {
                            summary.change_failures += 1;
                            format!(
                                "{} failed: {}",
                                action.word(),
                                d.message.as_deref().unwrap_or("no answer")
                            )
                        }
                    };
                    outcomes.insert(d.job.identity.clone(), word);
                }
                if let Some(execute::Fatal(message)) = fatal {
                    state.finish_run(run, Some("stopped during the leaver step"))?;
                    return Err(RunError::Aborted(message));
                }
            }
        }
    }
    write_leavers(&leavers_file, &plan, &outcomes)?;
    summary.leavers_file = Some(leavers_file.display().to_string());
    let held = (!plan.held.is_empty()).then(|| plan.held.join("; "));
    state.finish_run(run, held.as_deref())?;
    if let Some(report) = &settings.report {
        add_to_report(report, &summary)?;
    }
    Ok((result, summary))
}

/// Adds the sync's totals to the HTML report the create step wrote (`--report`).
fn add_to_report(path: &Path, summary: &SyncSummary) -> Result<(), RunError> {
    let Ok(html) = std::fs::read_to_string(path) else {
        return Ok(()); // not written (a stop before the end): nothing to add to
    };
    let esc = crate::report::html::esc;
    let mut section = String::from("<h2>Sync</h2>\n<table id=\"sync\">\n<tbody>\n");
    for (label, n) in [
        ("updated", summary.updated),
        ("unchanged", summary.unchanged),
        ("leavers", summary.leavers),
        ("pending leavers", summary.pending_leavers),
        ("deactivated", summary.deactivated),
        ("reactivated", summary.reactivated),
        ("deleted", summary.deleted),
        ("changes failed", summary.change_failures),
    ] {
        section.push_str(&format!(
            "<tr><th>{label}</th><td class=\"n\">{n}</td></tr>\n"
        ));
    }
    section.push_str("</tbody>\n</table>\n");
    for why in &summary.held {
        section.push_str(&format!(
            "<p class=\"warn\">Leaver step held back: {}</p>\n",
            esc(why)
        ));
    }
    for note in &summary.notes {
        section.push_str(&format!("<p>Note: {}</p>\n", esc(note)));
    }
    let html = match html.rfind("</body>") {
        Some(at) => format!("{}{section}{}", &html[..at], &html[at..]),
        None => format!("{html}{section}"),
    };
    plan::write_file(path, html.as_bytes())
}

/// Whether the target can do `action` at all (its answer for a placeholder user).
fn probe(api: &dyn crate::targets::Api, action: Action) -> Result<(), String> {
    let nothing = serde_json::Value::Null;
    let nobody = crate::model::UserFields::default();
    let bodies = crate::targets::lifecycle::Bodies {
        before: &nothing,
        after: &nothing,
        current: None,
        user: &nobody,
    };
    api.change(action, "probe", bodies).map(|_| ())
}

/// The create body of `user` (no password) as JSON: what an update compares.
fn body_json(target: &Target, user: &crate::model::UserFields) -> serde_json::Value {
    let mut user = user.clone();
    user.set(crate::model::Field::Password, None);
    serde_json::from_slice(&target.schema.body(&user)).unwrap_or(serde_json::Value::Null)
}

fn status_job(identity: &str, remote_id: Option<String>, action: Action, scan: &scan::Scan) -> Job {
    let fields = scan
        .people
        .get(identity)
        .map(|p| p.fields.clone())
        .unwrap_or_else(|| {
            let mut f = crate::model::UserFields::default();
            f.set(crate::model::Field::Email, Some(identity.to_string()));
            f
        });
    Job {
        identity: identity.to_string(),
        remote_id,
        action,
        before: serde_json::Value::Null,
        after: serde_json::Value::Null,
        fields,
        detail: "{}".into(),
        record: BTreeMap::new(),
    }
}

fn sorted(headers: &[String]) -> Vec<String> {
    let mut h = headers.to_vec();
    h.sort();
    h
}

/// `--apply`: the saved plan must be this very plan — same input bytes, target and ledger.
fn check_applicable(path: &Path, now: &Plan) -> Result<(), RunError> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| RunError::Usage(format!("cannot read the plan {}: {e}", path.display())))?;
    let saved: Plan = serde_json::from_str(&text).map_err(|e| {
        RunError::Usage(format!(
            "{} is not a plan written by `roster sync --dry-run --plan FILE.json`: {e}",
            path.display()
        ))
    })?;
    let refuse = |what: &str| {
        Err(RunError::Usage(format!(
            "refusing to apply {}: {what} changed since the plan was made; make a new plan",
            path.display()
        )))
    };
    if saved.input_sha256 != now.input_sha256 {
        return refuse("the input file");
    }
    if saved.target != now.target {
        return refuse("the target");
    }
    if saved.ledger_fingerprint != now.ledger_fingerprint {
        return refuse("the ledger");
    }
    if saved.leavers_mode != now.leavers_mode
        || saved.actions != now.actions
        || saved.held != now.held
    {
        return refuse("the sync's options");
    }
    Ok(())
}

/// `<input>.leavers.csv`: every leaver and pending leaver, with what was done.
fn write_leavers(
    path: &Path,
    plan: &Plan,
    outcomes: &BTreeMap<String, String>,
) -> Result<(), RunError> {
    let mut w = csv::Writer::from_writer(Vec::new());
    let _ = w.write_record([
        "identity",
        "remote_id",
        "last_seen",
        "absent_syncs",
        "outcome",
    ]);
    for action in &plan.actions {
        let row = match action {
            Planned::Leaver {
                identity,
                remote_id,
                absent_runs,
                last_seen,
            } => {
                let outcome = match (&plan.held.is_empty(), outcomes.get(identity)) {
                    (false, _) => format!("held back: {}", plan.held.join("; ")),
                    (true, Some(o)) => o.clone(),
                    (true, None) => "reported (nobody touched)".into(),
                };
                [
                    identity.clone(),
                    remote_id.clone().unwrap_or_default(),
                    last_seen.clone().unwrap_or_default(),
                    absent_runs.to_string(),
                    outcome,
                ]
            }
            Planned::Pending {
                identity,
                absent_runs,
            } => [
                identity.clone(),
                String::new(),
                String::new(),
                absent_runs.to_string(),
                "pending: absent fewer syncs in a row than --leaver-after".into(),
            ],
            _ => continue,
        };
        let row: Vec<String> = row
            .iter()
            .map(|c| crate::model::cells::neutralise(c).into_owned())
            .collect();
        let _ = w.write_record(&row);
    }
    let bytes = w.into_inner().unwrap_or_default();
    plan::write_file(path, &bytes)
}
