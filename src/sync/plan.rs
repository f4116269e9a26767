//! A sync's plan: every action it would take, computed from the input and the ledger alone
//! (no request), with the safeguards that hold the leaver step back. `--dry-run --plan FILE`
//! writes it; `--apply FILE.json` runs exactly it, when nothing it was made from changed.

use super::scan::Scan;
use super::state::{Baseline, Known, fields_of, kept_values};
use crate::model::{Field, UserFields};
use crate::targets::Target;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// What to do with people who left (absent from the input).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum LeaverMode {
    /// List them in `<input>.leavers.csv`; touch nobody.
    Report,
    /// Disable them where the target can (else report them).
    Deactivate,
    /// Delete them where the target documents a DELETE.
    Delete,
}

/// How many leavers a sync may act on.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum LeaverLimit {
    /// At most this many.
    Count(u64),
    /// At most this share (0-100 %) of the people known.
    Percent(f64),
    /// 5 % of the people known (at least 1), and at most 50.
    Default,
}

impl LeaverLimit {
    /// Parses `N` or `P%`.
    pub fn parse(text: &str) -> Result<LeaverLimit, String> {
        let text = text.trim();
        match text.strip_suffix('%') {
            Some(p) => match p.trim().parse::<f64>() {
                Ok(p) if (0.0..=100.0).contains(&p) => Ok(LeaverLimit::Percent(p)),
                _ => Err(format!("`{text}` is not a share from 0% to 100%")),
            },
            None => text
                .parse::<u64>()
                .map(LeaverLimit::Count)
                .map_err(|_| format!("`{text}` is neither a count (N) nor a share (P%)")),
        }
    }

    /// The limit for `known` people.
    pub fn of(self, known: u64) -> u64 {
        match self {
            LeaverLimit::Count(n) => n,
            LeaverLimit::Percent(p) => (known as f64 * p / 100.0).floor() as u64,
            LeaverLimit::Default => ((known as f64 * 0.05).ceil() as u64).clamp(1, 50),
        }
    }
}

/// A sync's leaver settings.
#[derive(Debug, Clone, Copy)]
pub struct LeaverRules {
    /// What to do with them.
    pub mode: LeaverMode,
    /// How many at most.
    pub limit: LeaverLimit,
    /// Consecutive syncs a person must be absent from first.
    pub after: u32,
}

/// One field's change.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FieldChange {
    /// The field.
    pub field: String,
    /// As last sent (none: not known, or empty).
    pub before: Option<String>,
    /// As the file says now (none: emptied).
    pub after: Option<String>,
}

/// One planned action.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "action", rename_all = "lowercase")]
pub enum Planned {
    /// A new person: created as `import` does.
    Create {
        /// Who.
        identity: String,
        /// The row in the input.
        row: u64,
        /// The values the body carries (no password).
        fields: BTreeMap<String, String>,
    },
    /// Fields changed since roster last sent them.
    Update {
        /// Who.
        identity: String,
        /// The target's id.
        remote_id: Option<String>,
        /// The row in the input.
        row: u64,
        /// Each changed field.
        changes: Vec<FieldChange>,
        /// The values roster has not recorded as sent (people found existing, or created
        /// before syncs kept them): the update sends every field the file has.
        baseline_unknown: bool,
    },
    /// Back after a deactivation: enabled again under the same id.
    Reactivate {
        /// Who.
        identity: String,
        /// The target's id.
        remote_id: Option<String>,
    },
    /// Left: deactivated, deleted or reported, per `--leavers`.
    Leaver {
        /// Who.
        identity: String,
        /// The target's id.
        remote_id: Option<String>,
        /// Syncs in a row without them, this one included.
        absent_runs: u32,
        /// When a sync last found them (RFC 3339), if one did.
        last_seen: Option<String>,
    },
    /// Absent, but fewer syncs in a row than `--leaver-after`.
    Pending {
        /// Who.
        identity: String,
        /// Syncs in a row without them, this one included.
        absent_runs: u32,
    },
}

impl Planned {
    /// Who the action is for.
    pub fn identity(&self) -> &str {
        match self {
            Planned::Create { identity, .. }
            | Planned::Update { identity, .. }
            | Planned::Reactivate { identity, .. }
            | Planned::Leaver { identity, .. }
            | Planned::Pending { identity, .. } => identity,
        }
    }
}

/// A sync's plan.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Plan {
    /// roster's version.
    pub version: String,
    /// The target's ledger key.
    pub target: String,
    /// The input as named.
    pub input: String,
    /// SHA-256 of the input's bytes.
    pub input_sha256: String,
    /// The ledger's fingerprint for this target when the plan was made.
    pub ledger_fingerprint: String,
    /// What to do with leavers.
    pub leavers_mode: LeaverMode,
    /// Most leavers acted on.
    pub leaver_limit: u64,
    /// People the ledger knows for this target.
    pub known: u64,
    /// Data rows in the input.
    pub rows: u64,
    /// Why the leaver step is held back, if it is (each safeguard that tripped).
    pub held: Vec<String>,
    /// Every action.
    pub actions: Vec<Planned>,
    /// People found and unchanged.
    pub unchanged: u64,
    /// What the target cannot do, and what is done instead.
    #[serde(default)]
    pub notes: Vec<String>,
}

impl Plan {
    /// How many actions of each kind: (creates, updates, reactivations, leavers, pending).
    pub fn counts(&self) -> (u64, u64, u64, u64, u64) {
        let mut c = (0, 0, 0, 0, 0);
        for a in &self.actions {
            match a {
                Planned::Create { .. } => c.0 += 1,
                Planned::Update { .. } => c.1 += 1,
                Planned::Reactivate { .. } => c.2 += 1,
                Planned::Leaver { .. } => c.3 += 1,
                Planned::Pending { .. } => c.4 += 1,
            }
        }
        c
    }
}

/// The fields of `after` that differ from `before` and that the target receives: a field
/// counts when putting its old value back changes the body (a change in a column the target
/// does not receive is not a change). An emptied cell is not a change: an update never clears
/// a field at the target (a column dropped from an export would otherwise empty everyone's).
/// The password is never compared.
pub fn changed_fields(target: &Target, before: &UserFields, after: &UserFields) -> Vec<Field> {
    let differ: Vec<Field> = Field::ALL
        .iter()
        .copied()
        .filter(|f| !f.is_secret() && after.get(*f).is_some() && before.get(*f) != after.get(*f))
        .collect();
    // An unchanged person (most of a nightly export) costs no body at all.
    if differ.is_empty() {
        return differ;
    }
    let body = target.schema.body(after);
    differ
        .into_iter()
        .filter(|&f| {
            let mut reverted = after.clone();
            reverted.set(f, before.get(f).map(str::to_string));
            target.schema.body(&reverted) != body
        })
        .collect()
}

/// `ms` since the epoch as RFC 3339 (seconds).
pub fn rfc3339_ms(ms: i64) -> String {
    let time = std::time::UNIX_EPOCH + std::time::Duration::from_millis(ms.max(0) as u64);
    humantime::format_rfc3339_seconds(time).to_string()
}

/// Computes the plan: creates for people the ledger does not hold as done, updates for
/// changed ones, reactivations, and leavers or pending leavers, with every safeguard checked.
pub fn compute(
    scan: &Scan,
    known: &[Known],
    baseline: Option<&Baseline>,
    target: &Target,
    rules: LeaverRules,
) -> (Vec<Planned>, Vec<String>, u64, u64) {
    let known_by: BTreeMap<&str, &Known> = known.iter().map(|k| (k.identity.as_str(), k)).collect();
    let mut actions = Vec::new();
    let mut unchanged = 0;
    for (identity, person) in &scan.people {
        let Some(k) = known_by.get(identity.as_str()) else {
            actions.push(Planned::Create {
                identity: identity.clone(),
                row: person.row,
                fields: kept_values(&person.fields),
            });
            continue;
        };
        if k.status == "deleted" {
            actions.push(Planned::Create {
                identity: identity.clone(),
                row: person.row,
                fields: kept_values(&person.fields),
            });
            continue;
        }
        if k.status == "deactivated" {
            actions.push(Planned::Reactivate {
                identity: identity.clone(),
                remote_id: k.remote_id.clone(),
            });
        }
        let before = k.sent.as_ref().map(fields_of).unwrap_or_default();
        let changed = changed_fields(target, &before, &person.fields);
        if changed.is_empty() {
            if k.status != "deactivated" {
                unchanged += 1;
            }
            continue;
        }
        actions.push(Planned::Update {
            identity: identity.clone(),
            remote_id: k.remote_id.clone(),
            row: person.row,
            changes: changed
                .iter()
                .map(|&f| FieldChange {
                    field: f.name().to_string(),
                    before: before.get(f).map(str::to_string),
                    after: person.fields.get(f).map(str::to_string),
                })
                .collect(),
            baseline_unknown: k.sent.is_none(),
        });
    }
    let mut leavers = 0u64;
    for k in known {
        if scan.present.contains(&k.identity) || k.status != "active" {
            continue;
        }
        let absent_runs = k.absent_runs + 1;
        if absent_runs >= rules.after.max(1) {
            leavers += 1;
            actions.push(Planned::Leaver {
                identity: k.identity.clone(),
                remote_id: k.remote_id.clone(),
                absent_runs,
                last_seen: k.last_seen_ms.map(rfc3339_ms),
            });
        } else {
            actions.push(Planned::Pending {
                identity: k.identity.clone(),
                absent_runs,
            });
        }
    }
    let active = known.iter().filter(|k| k.status == "active").count() as u64;
    let limit = rules.limit.of(active);
    let mut held = Vec::new();
    if scan.rows == 0 {
        held.push(
            "the input has no data rows (empty or header only): it cannot say who left".into(),
        );
    }
    if let Some(defect) = &scan.truncated {
        held.push(format!(
            "the input looks cut short ({defect}): it cannot say who left"
        ));
    }
    if let Some(base) = baseline {
        let mut headers = scan.headers.clone();
        headers.sort();
        if !base.headers.is_empty() && base.headers != headers {
            held.push(format!(
                "the header set changed since the last sync (was: {}; now: {})",
                base.headers.join(", "),
                headers.join(", ")
            ));
        }
        if base.rows > scan.rows && base.rows - scan.rows > limit {
            held.push(format!(
                "the input has {} rows, {} fewer than the last sync's {}: more than the leaver limit of {limit}",
                scan.rows,
                base.rows - scan.rows,
                base.rows
            ));
        }
    }
    if leavers > limit {
        held.push(format!(
            "{leavers} leavers is more than the limit of {limit} (--max-leavers; default 5% of the {active} people known, at most 50)"
        ));
    }
    (actions, held, unchanged, limit)
}

/// Writes the plan as JSON, CSV (one line per action and field change) or HTML, by the
/// file's extension.
pub fn write(plan: &Plan, path: &std::path::Path) -> Result<(), crate::error::RunError> {
    let ext = path
        .extension()
        .map(|e| e.to_string_lossy().to_ascii_lowercase())
        .unwrap_or_default();
    let bytes = match ext.as_str() {
        "json" => serde_json::to_vec_pretty(plan).expect("a plan always serialises"),
        "csv" => csv_text(plan).into_bytes(),
        "html" | "htm" => html_text(plan).into_bytes(),
        _ => {
            return Err(crate::error::RunError::Usage(format!(
                "--plan {}: the plan is written as .json, .csv or .html",
                path.display()
            )));
        }
    };
    write_file(path, &bytes)
}

/// Writes `bytes` to `path` (personal data: never through a symbolic link).
pub fn write_file(path: &std::path::Path, bytes: &[u8]) -> Result<(), crate::error::RunError> {
    use std::io::Write;
    crate::files::create(path, crate::files::Privacy::Personal)
        .and_then(|mut f| f.write_all(bytes))
        .map_err(|source| crate::error::RunError::Output {
            path: path.to_path_buf(),
            source,
        })
}

/// The rows of a plan's CSV: action, identity, remote id, field, before, after, note.
fn rows(plan: &Plan) -> Vec<[String; 7]> {
    let mut out = Vec::new();
    let s = |v: &Option<String>| v.clone().unwrap_or_default();
    for a in &plan.actions {
        match a {
            Planned::Create {
                identity, fields, ..
            } => {
                for (field, value) in fields {
                    out.push([
                        "create".into(),
                        identity.clone(),
                        String::new(),
                        field.clone(),
                        String::new(),
                        value.clone(),
                        String::new(),
                    ]);
                }
            }
            Planned::Update {
                identity,
                remote_id,
                changes,
                baseline_unknown,
                ..
            } => {
                let note = if *baseline_unknown {
                    "values last sent unknown: every field is sent"
                } else {
                    ""
                };
                for c in changes {
                    out.push([
                        "update".into(),
                        identity.clone(),
                        s(remote_id),
                        c.field.clone(),
                        s(&c.before),
                        s(&c.after),
                        note.into(),
                    ]);
                }
            }
            Planned::Reactivate {
                identity,
                remote_id,
            } => out.push([
                "reactivate".into(),
                identity.clone(),
                s(remote_id),
                String::new(),
                String::new(),
                String::new(),
                "back in the input".into(),
            ]),
            Planned::Leaver {
                identity,
                remote_id,
                absent_runs,
                last_seen,
            } => {
                let word = match (plan.held.is_empty(), plan.leavers_mode) {
                    (false, _) | (true, LeaverMode::Report) => "report",
                    (true, LeaverMode::Deactivate) => "deactivate",
                    (true, LeaverMode::Delete) => "delete",
                };
                let note = format!(
                    "absent from {absent_runs} sync(s) in a row; last seen {}{}",
                    last_seen.as_deref().unwrap_or("never by a sync"),
                    if plan.held.is_empty() {
                        String::new()
                    } else {
                        format!("; held back: {}", plan.held.join("; "))
                    }
                );
                out.push([
                    word.into(),
                    identity.clone(),
                    s(remote_id),
                    String::new(),
                    String::new(),
                    String::new(),
                    note,
                ]);
            }
            Planned::Pending {
                identity,
                absent_runs,
            } => out.push([
                "pending".into(),
                identity.clone(),
                String::new(),
                String::new(),
                String::new(),
                String::new(),
                format!(
                    "absent from {absent_runs} sync(s) in a row; a leaver after --leaver-after"
                ),
            ]),
        }
    }
    out
}

fn csv_text(plan: &Plan) -> String {
    let mut w = csv::Writer::from_writer(Vec::new());
    let _ = w.write_record([
        "action",
        "identity",
        "remote_id",
        "field",
        "before",
        "after",
        "note",
    ]);
    for row in rows(plan) {
        let row: Vec<String> = row
            .iter()
            .map(|c| crate::model::cells::neutralise(c).into_owned())
            .collect();
        let _ = w.write_record(&row);
    }
    String::from_utf8(w.into_inner().unwrap_or_default()).unwrap_or_default()
}

fn html_text(plan: &Plan) -> String {
    let e = crate::report::html::esc;
    let (c, u, r, l, p) = plan.counts();
    let mut out = format!(
        "<!doctype html><html><head><meta charset=\"utf-8\"><title>roster sync plan</title>\
         <style>body{{font-family:sans-serif}}table{{border-collapse:collapse}}td,th{{border:1px solid #ccc;padding:2px 6px}}</style>\
         </head><body><h1>roster sync plan</h1><p>target {} · input {} · {} rows · {} people known</p>\
         <p>{c} to create, {u} to update, {r} to reactivate, {l} leavers ({}), {p} pending leavers, {} unchanged</p>",
        e(&plan.target),
        e(&plan.input),
        plan.rows,
        plan.known,
        match plan.leavers_mode {
            LeaverMode::Report => "reported",
            LeaverMode::Deactivate => "deactivated",
            LeaverMode::Delete => "deleted",
        },
        plan.unchanged
    );
    for note in &plan.notes {
        out.push_str(&format!("<p>Note: {}</p>", e(note)));
    }
    if !plan.held.is_empty() {
        out.push_str("<h2>Leaver step held back</h2><ul>");
        for h in &plan.held {
            out.push_str(&format!("<li>{}</li>", e(h)));
        }
        out.push_str("</ul>");
    }
    out.push_str("<table><tr><th>action</th><th>identity</th><th>remote id</th><th>field</th><th>before</th><th>after</th><th>note</th></tr>");
    for row in rows(plan) {
        out.push_str("<tr>");
        for cell in row {
            out.push_str(&format!("<td>{}</td>", e(&cell)));
        }
        out.push_str("</tr>");
    }
    out.push_str("</table></body></html>\n");
    out
}
