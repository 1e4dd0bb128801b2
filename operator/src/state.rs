//! The DynamoDB state table: one item per StreamInstance, keyed by `domain` (the CloudFront
//! domain) as the original system keyed it, so its readers (the copilot, dashboards, existing
//! tooling) keep working.
//!
//! Every write is conditional on the item's `version`, which only increases: a write based on a
//! stale read fails and is retried from a fresh read, so a late write never undoes a newer one in
//! this region. (Across regions a global table is last-writer-wins; the operator writes in one
//! region only, `spec.stateTable.region`.) `event_seq`, advanced in the same write whenever the
//! write changes health or open state, is the per-instance sequence number of the SNS events, so
//! it survives operator restarts and has no gaps unless an event is lost.
//!
//! Items are read strictly: every attribute the operator writes must have its type and range
//! (see [`Item::from_attributes`]). An item that does not is [`Malformed`]; it is never read with
//! defaults, it is rewritten whole by a write conditional on the malformed `version` still being
//! there.

use crate::notify::{InstanceEvent, InstanceState};
use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::types::{
    AttributeDefinition, AttributeValue, BillingMode, CreateReplicationGroupMemberAction,
    KeySchemaElement, KeyType, ReplicationGroupUpdate, ScalarAttributeType, StreamSpecification,
    StreamViewType, TableStatus,
};
use std::collections::HashMap;

/// The item's key attribute.
pub const KEY: &str = "domain";

const ANNOUNCED: &str = "announced_version";
const PREVIOUS_OPEN: &str = "previous_distro_open";
const PREVIOUS_FRESH: &str = "previous_playlist_fresh";
const EVENT_SEQ: &str = "event_seq";
const VERSION: &str = "version";
const OWNER: &str = "owner";

/// The `reason` of an item whose StreamInstance was deleted (`clusteredStream` and the domain
/// are immutable, so deletion is the only way out of a ClusteredStream). Such an item is kept,
/// closed, rather than deleted: its version and `event_seq` go on increasing if the domain comes
/// back, so SNS sequence numbers never repeat, and readers see the region closed rather than an unknown
/// domain.
pub const REMOVED_REASON: &str = "InstanceRemoved";

/// What the operator wants an instance's item to say.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Desired {
    pub domain: String,
    /// The effective open state, what the copilot enforces.
    pub distro_open: bool,
    /// `spec.distroOpen`.
    pub desired_open: bool,
    /// Playlists fresh; `None` while the instance has no verdict (after a restart, or a new
    /// instance not judged yet). A write without a verdict keeps the health the item records
    /// (see [`Desired::over`]); a new item written before any verdict stores no
    /// `playlist_fresh` / `stale` at all: not judged yet is neither fresh nor stale.
    pub healthy: Option<bool>,
    pub region: String,
    /// `namespace/name` of the ClusteredStream.
    pub cluster: String,
    /// `namespace/name` of the StreamInstance.
    pub name: String,
    pub reason: String,
}

/// An item as stored.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Item {
    pub desired: Desired,
    pub updated_at: String,
    pub version: u64,
    /// Every change up to this version has been announced on SNS, or needed no event. `None`
    /// on items written before the operator tracked it (nothing is replayed for those).
    pub announced_version: Option<u64>,
    /// The open state and freshness before the write that made `version` (absent on creation):
    /// enough to announce that change again after a restart.
    pub previous: Option<InstanceState>,
    /// The sequence number of the last event this item owed; `None` on items written before
    /// the operator kept it, whose last event carried `version` as its sequence.
    pub event_seq: Option<u64>,
    /// `namespace/ClusteredStream/StreamInstance` that owns the item: the `owner` attribute, or
    /// for items written before it existed, made from `cluster` and `name`. `None` on an item
    /// of the original system.
    pub owner: Option<String>,
}

/// The annotation on a StreamInstance that lets it take over an item another owner (or the
/// original system) wrote: `cvs.dev/take-over-state-item: "true"`.
pub const TAKE_OVER_ANNOTATION: &str = "cvs.dev/take-over-state-item";

/// `namespace/ClusteredStream/StreamInstance` from `cluster` (`namespace/name`) and `name`
/// (`namespace/name`), when both are set.
fn owner_of(cluster: &str, name: &str) -> Option<String> {
    let instance = name.rsplit('/').next().unwrap_or(name);
    (!cluster.is_empty() && !instance.is_empty()).then(|| format!("{cluster}/{instance}"))
}

impl Desired {
    /// The owner this write records.
    pub fn owner(&self) -> String {
        owner_of(&self.cluster, &self.name).unwrap_or_default()
    }

    /// Whether this may be written over an item owned by `owner` (`take_over`: the instance
    /// carries [`TAKE_OVER_ANNOTATION`]). Refused: another owner's item, or an item of the
    /// original system (no owner), unless taken over on purpose.
    pub fn may_write_over(&self, owner: Option<&str>, take_over: bool) -> bool {
        take_over || owner == Some(self.owner().as_str())
    }

    /// What to write over `prior` (the stored item, or the last one known when it went
    /// missing): without a verdict, the health the item records is kept, so a restart (or a
    /// probe not done yet) never rewrites a region as fresh or stale.
    pub fn over(&self, prior: Option<&Item>) -> Desired {
        let mut d = self.clone();
        if d.healthy.is_none() {
            d.healthy = prior.and_then(|p| p.desired.healthy);
        }
        d
    }

    /// The open state and freshness this asks for, as events report it.
    pub fn state(&self) -> InstanceState {
        InstanceState {
            open: self.distro_open,
            healthy: self.healthy,
        }
    }

    /// Whether writing this over `current` changes health or open state (and so owes an SNS
    /// event, when the ClusteredStream has a topic, and advances `event_seq`).
    pub fn changes_state(&self, current: Option<&Item>) -> bool {
        InstanceEvent::type_for(current.map(Item::state).as_ref(), &self.state()).is_some()
    }

    /// Whether writing this over `current` may mark the item announced up to the new version
    /// (`announce`: the ClusteredStream has a topic): the write owes no event, and no earlier
    /// change is still owed one.
    pub fn settles(&self, current: Option<&Item>, announce: bool) -> bool {
        if !announce {
            return true;
        }
        let Some(c) = current else {
            return false;
        };
        !self.changes_state(current) && c.announced_version.is_none_or(|a| a >= c.version)
    }

    /// Whether `current` already says what this wants (the timestamp and version aside).
    pub fn matches(&self, current: &Item) -> bool {
        let c = &current.desired;
        c.distro_open == self.distro_open
            && c.desired_open == self.desired_open
            && c.healthy == self.healthy
            && c.region == self.region
            && c.cluster == self.cluster
            && c.name == self.name
            && c.reason == self.reason
            && current.owner.as_deref() == Some(self.owner().as_str())
    }

    /// The attributes that differ between `self` and `other`, by their stored names.
    pub fn differences(&self, other: &Desired) -> Vec<String> {
        let mut out = Vec::new();
        let mut diff = |name: &str, a: String, b: String| {
            if a != b {
                out.push(format!("{name}: {b} (expected {a})"));
            }
        };
        diff(
            "distro_open",
            self.distro_open.to_string(),
            other.distro_open.to_string(),
        );
        diff(
            "desired_open",
            self.desired_open.to_string(),
            other.desired_open.to_string(),
        );
        let health = |h: Option<bool>| h.map_or("absent".to_owned(), |h| h.to_string());
        diff(
            "playlist_fresh",
            health(self.healthy),
            health(other.healthy),
        );
        diff("region", self.region.clone(), other.region.clone());
        diff("cluster", self.cluster.clone(), other.cluster.clone());
        diff("name", self.name.clone(), other.name.clone());
        diff("reason", self.reason.clone(), other.reason.clone());
        out
    }

    /// The attributes to SET, and those to REMOVE (health without a verdict).
    fn to_attributes(
        &self,
        updated_at: &str,
        version: u64,
    ) -> (HashMap<String, AttributeValue>, Vec<&'static str>) {
        let s = |v: &str| AttributeValue::S(v.to_owned());
        let mut set = HashMap::from([
            (KEY.to_owned(), s(&self.domain)),
            (
                "distro_open".to_owned(),
                AttributeValue::Bool(self.distro_open),
            ),
            (
                "desired_open".to_owned(),
                AttributeValue::Bool(self.desired_open),
            ),
            ("region".to_owned(), s(&self.region)),
            ("cluster".to_owned(), s(&self.cluster)),
            ("name".to_owned(), s(&self.name)),
            ("reason".to_owned(), s(&self.reason)),
            (OWNER.to_owned(), s(&self.owner())),
            ("updated_at".to_owned(), s(updated_at)),
            (VERSION.to_owned(), AttributeValue::N(version.to_string())),
        ]);
        let mut remove = Vec::new();
        match self.healthy {
            Some(fresh) => {
                set.insert("playlist_fresh".to_owned(), AttributeValue::Bool(fresh));
                set.insert("stale".to_owned(), AttributeValue::Bool(!fresh));
            }
            None => remove.extend(["playlist_fresh", "stale"]),
        }
        (set, remove)
    }
}

/// One attribute of a stored item that is not what the operator writes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Problem {
    pub attribute: &'static str,
    pub why: String,
}

impl std::fmt::Display for Problem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}", self.attribute, self.why)
    }
}

/// A stored item that cannot be read strictly.
#[derive(Clone, Debug, PartialEq)]
pub struct Malformed {
    pub domain: String,
    pub problems: Vec<Problem>,
    /// The stored `version` attribute exactly as it is, for the repair's condition.
    raw_version: Option<AttributeValue>,
    /// What the repair writes as version: one past a readable version, else 1.
    next_version: u64,
    /// What the repair writes as `event_seq`: one past a readable one, else 1.
    next_event_seq: u64,
    /// The owner, as far as it can be read.
    pub owner: Option<String>,
}

impl Malformed {
    /// `attr why; attr why`, for conditions and Events.
    pub fn describe(&self) -> String {
        self.problems
            .iter()
            .map(Problem::to_string)
            .collect::<Vec<_>>()
            .join("; ")
    }
}

/// An item as read: well-formed, or not.
pub type Stored = Result<Item, Box<Malformed>>;

/// Reads a number attribute strictly: `Ok(None)` when absent.
fn number(
    attrs: &HashMap<String, AttributeValue>,
    attribute: &'static str,
    problems: &mut Vec<Problem>,
) -> Option<u64> {
    let v = attrs.get(attribute)?;
    let why = match v.as_n() {
        Err(_) => "is not a number".to_owned(),
        Ok(n) => match n.parse::<u64>() {
            Ok(u64::MAX) => "is at its maximum (18446744073709551615)".to_owned(),
            Ok(n) => return Some(n),
            Err(_) => format!("is {n}, not an integer from 0 to 18446744073709551614"),
        },
    };
    problems.push(Problem { attribute, why });
    None
}

fn boolean(
    attrs: &HashMap<String, AttributeValue>,
    attribute: &'static str,
    problems: &mut Vec<Problem>,
) -> Option<bool> {
    let v = attrs.get(attribute)?;
    match v.as_bool() {
        Ok(b) => Some(*b),
        Err(_) => {
            problems.push(Problem {
                attribute,
                why: format!("is {}, not a boolean", kind_of(v)),
            });
            None
        }
    }
}

fn string(
    attrs: &HashMap<String, AttributeValue>,
    attribute: &'static str,
    problems: &mut Vec<Problem>,
) -> String {
    match attrs.get(attribute) {
        None => String::new(),
        Some(AttributeValue::S(s)) => s.clone(),
        Some(v) => {
            problems.push(Problem {
                attribute,
                why: format!("is {}, not a string", kind_of(v)),
            });
            String::new()
        }
    }
}

fn kind_of(v: &AttributeValue) -> String {
    match v {
        AttributeValue::S(s) => format!("the string {s:?}"),
        AttributeValue::N(n) => format!("the number {n}"),
        AttributeValue::Bool(b) => format!("the boolean {b}"),
        AttributeValue::Null(_) => "null".to_owned(),
        _ => "a list, map, set or binary".to_owned(),
    }
}

impl Item {
    /// What the item should say once its StreamInstance is gone: closed, the rest as it was.
    pub fn retired(&self) -> Desired {
        Desired {
            distro_open: false,
            reason: REMOVED_REASON.to_owned(),
            ..self.desired.clone()
        }
    }

    /// The open state and freshness this item records, as events report it.
    pub fn state(&self) -> InstanceState {
        self.desired.state()
    }

    /// The sequence number of the last event this item owed.
    pub fn sequence(&self) -> u64 {
        self.event_seq.unwrap_or(self.version)
    }

    /// The change that made `version`, if it was owed an SNS event that was never confirmed
    /// delivered (the operator stopped first): `(old, new)`, `old` being `None` for a new item.
    pub fn unannounced_change(&self) -> Option<(Option<InstanceState>, InstanceState)> {
        if self.announced_version? >= self.version {
            return None;
        }
        let change = (self.previous.clone(), self.state());
        InstanceEvent::type_for(change.0.as_ref(), &change.1).map(|_| change)
    }

    /// Reads an item strictly. Attributes the original system did not write may be absent
    /// (`version` then reads as 0, `desired_open` as `distro_open`, health as not judged yet
    /// when neither `playlist_fresh` nor `stale` is there); an attribute that is present must
    /// have the type the operator writes, `version`, `event_seq` and `announced_version` must
    /// be integers from 0 to 2^64 - 2, `distro_open` must be there, and `playlist_fresh` and
    /// `stale` must not contradict each other. Anything else is [`Malformed`], naming the
    /// attributes.
    pub fn from_attributes(attrs: &HashMap<String, AttributeValue>) -> Stored {
        let mut p = Vec::new();
        let domain = match attrs.get(KEY) {
            Some(AttributeValue::S(s)) => s.clone(),
            _ => {
                p.push(Problem {
                    attribute: KEY,
                    why: "is not a string".into(),
                });
                String::new()
            }
        };
        let version = number(attrs, VERSION, &mut p);
        let event_seq = number(attrs, EVENT_SEQ, &mut p);
        let announced_version = number(attrs, ANNOUNCED, &mut p);
        let distro_open = boolean(attrs, "distro_open", &mut p);
        if distro_open.is_none() && !attrs.contains_key("distro_open") {
            p.push(Problem {
                attribute: "distro_open",
                why: "is missing".into(),
            });
        }
        let desired_open = boolean(attrs, "desired_open", &mut p);
        let fresh = boolean(attrs, "playlist_fresh", &mut p);
        let stale = boolean(attrs, "stale", &mut p);
        if let (Some(f), Some(s)) = (fresh, stale)
            && f == s
        {
            p.push(Problem {
                attribute: "stale",
                why: format!("is {s} while playlist_fresh is {f}"),
            });
        }
        let previous_open = boolean(attrs, PREVIOUS_OPEN, &mut p);
        let previous_fresh = boolean(attrs, PREVIOUS_FRESH, &mut p);
        let region = string(attrs, "region", &mut p);
        let cluster = string(attrs, "cluster", &mut p);
        let name = string(attrs, "name", &mut p);
        let reason = string(attrs, "reason", &mut p);
        let updated_at = string(attrs, "updated_at", &mut p);
        let owner = match string(attrs, OWNER, &mut p) {
            o if o.is_empty() => owner_of(&cluster, &name),
            o => Some(o),
        };
        let (Some(distro_open), true) = (distro_open, p.is_empty()) else {
            let next = |n: Option<u64>| n.map_or(1, |n| n.saturating_add(1));
            return Err(Box::new(Malformed {
                domain,
                problems: p,
                raw_version: attrs.get(VERSION).cloned(),
                next_version: next(version),
                next_event_seq: next(event_seq.or(version)),
                owner,
            }));
        };
        Ok(Item {
            desired: Desired {
                domain,
                distro_open,
                desired_open: desired_open.unwrap_or(distro_open),
                healthy: fresh.or(stale.map(|s| !s)),
                region,
                cluster,
                name,
                reason,
            },
            updated_at,
            version: version.unwrap_or(0),
            announced_version,
            previous: previous_open.map(|open| InstanceState {
                open,
                healthy: previous_fresh,
            }),
            event_seq,
            owner,
        })
    }
}

/// The items of one ClusteredStream that no StreamInstance of it claims any more (their domain
/// is not among `member_domains`) and that are not retired yet.
pub fn to_retire<'a>(
    items: &'a [Item],
    member_domains: &std::collections::BTreeSet<String>,
) -> Vec<&'a Item> {
    items
        .iter()
        .filter(|i| !member_domains.contains(&i.desired.domain))
        .filter(|i| !i.retired().matches(i))
        .collect()
}

/// How long a state-table item must have been claimed by no StreamInstance before it is closed
/// as removed. A teardown deletes objects one by one in no fixed order (deleting the CRDs deletes
/// every object); within this grace the ClusteredStream is gone or being deleted too, and then
/// nothing is closed.
pub const RETIRE_GRACE: std::time::Duration = std::time::Duration::from_secs(10);

/// Which unclaimed items are due to be closed at `now`. `since` holds when each domain was first
/// found unclaimed: domains claimed again are forgotten, new ones start their wait. Returns the
/// due domains and, when some still wait, how long until the first of them is due.
pub fn retire_due(
    since: &mut std::collections::HashMap<String, std::time::Instant>,
    unclaimed: &[&str],
    now: std::time::Instant,
    grace: std::time::Duration,
) -> (Vec<String>, Option<std::time::Duration>) {
    since.retain(|d, _| unclaimed.contains(&d.as_str()));
    let mut due = Vec::new();
    let mut wait: Option<std::time::Duration> = None;
    for d in unclaimed {
        let first = *since.entry((*d).to_owned()).or_insert(now);
        let waited = now.saturating_duration_since(first);
        if waited >= grace {
            due.push((*d).to_owned());
        } else {
            let left = grace - waited;
            wait = Some(wait.map_or(left, |w| w.min(left)));
        }
    }
    (due, wait)
}

/// How [`Synced::outside_change`] starts when the item had gone.
pub const MISSING: &str = "the item was missing (deleted, or the table emptied or re-created)";

/// How long a cached item is trusted before it is read again (strongly consistent): the bound
/// on how long an item deleted, emptied with its table, or changed by hand stays wrong.
pub const ITEM_REREAD: std::time::Duration = std::time::Duration::from_secs(30);

const REREAD_SLACK: std::time::Duration = std::time::Duration::from_secs(2);

/// A cache key: table name, table region, domain.
pub type ItemKey = (String, String, String);

/// The last item written or read, per (table, domain): saves a read before each write. An
/// entry older than [`ITEM_REREAD`] is not used for writing, only to tell what changed.
#[derive(Default)]
pub struct ItemCache {
    items: std::sync::Mutex<HashMap<ItemKey, (Item, std::time::Instant)>>,
    pruned_at: std::sync::Mutex<Option<std::time::Instant>>,
}

fn key(table: &StateTable, domain: &str) -> ItemKey {
    (table.name.clone(), table.region.clone(), domain.to_owned())
}

impl ItemCache {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<ItemKey, (Item, std::time::Instant)>> {
        self.items.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// `(fresh, expired)`: the cached item if it may be written over without a read, else the
    /// item this process last knew, if any.
    pub fn get(&self, table: &StateTable, domain: &str) -> (Option<Item>, Option<Item>) {
        match self.lock().get(&key(table, domain)) {
            // A little slack, so the reconcile that comes ITEM_REREAD after the last read
            // does read.
            Some((item, at)) if at.elapsed() + REREAD_SLACK < ITEM_REREAD => {
                (Some(item.clone()), None)
            }
            Some((item, _)) => (None, Some(item.clone())),
            None => (None, None),
        }
    }

    /// Remembers `item` as the table now holds it (just read or written: the entry's age
    /// starts again).
    pub fn remember(&self, table: &StateTable, item: &Item) {
        self.lock().insert(
            key(table, &item.desired.domain),
            (item.clone(), std::time::Instant::now()),
        );
    }

    /// Makes the next write read the item afresh (still knowing what it was).
    pub fn expire(&self, table: &StateTable, domain: &str) {
        if let Some((_, at)) = self.lock().get_mut(&key(table, domain))
            && let Some(old) = std::time::Instant::now().checked_sub(ITEM_REREAD)
        {
            *at = old;
        }
    }

    /// Forgets `domain`'s item.
    pub fn forget(&self, table: &StateTable, domain: &str) {
        self.lock().remove(&key(table, domain));
    }

    /// Keeps only the entries `keep` accepts.
    pub fn retain(&self, keep: impl Fn(&ItemKey) -> bool) {
        self.lock().retain(|k, _| keep(k));
    }

    /// Whether `every` has passed since this last said yes (then it counts from now).
    pub fn prune_due(&self, every: std::time::Duration) -> bool {
        let mut at = self.pruned_at.lock().unwrap_or_else(|p| p.into_inner());
        if at.is_some_and(|t| t.elapsed() < every) {
            return false;
        }
        *at = Some(std::time::Instant::now());
        true
    }

    pub fn len(&self) -> usize {
        self.lock().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// At most this many pages (1 MB each) are read when listing a ClusteredStream's items: far more
/// than any real table holds, and a bound on a table that is not what it should be.
const MAX_SCAN_PAGES: usize = 64;

/// What became of one requested replica region.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReplicaOutcome {
    pub region: String,
    pub result: Result<ReplicaState, String>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReplicaState {
    /// The table lists the replica.
    Present,
    /// Asked for just now (UpdateTable accepted it); it appears once AWS has built it.
    Requested,
}

/// The outcome of [`StateTable::sync`].
#[derive(Clone, Debug, PartialEq)]
pub struct Synced {
    /// The item as stored now.
    pub item: Item,
    /// The state this write changed from, for its event: the item it replaced, or the item
    /// last known when it had gone missing (`None` when nothing was written, or it is new or
    /// repaired).
    pub previous: Option<Item>,
    pub written: bool,
    /// The item as first read from the table, when no fresh cached copy was given.
    pub read: Option<Item>,
    /// The item was malformed and has been rewritten whole.
    pub repaired: Option<Malformed>,
    /// What someone else changed since this process last knew the item (it was missing, or its
    /// attributes differ), when the write put it right.
    pub outside_change: Option<String>,
}

/// Why a table operation failed.
#[derive(Clone, Debug, thiserror::Error)]
pub enum StateError {
    #[error(
        "table {table} does not exist in {region}; set spec.stateTable.create: true or create it with key '{KEY}' (string)"
    )]
    TableMissing { table: String, region: String },
    #[error("table {table} has the key schema {found}; it must be keyed by '{KEY}' (string, HASH)")]
    WrongKey { table: String, found: String },
    #[error("table {0} is not active yet")]
    NotActive(String),
    #[error("another writer changed the item for {0} first")]
    Conflict(String),
    #[error(
        "the item for {domain} belongs to {owner}; not written (annotate the StreamInstance {TAKE_OVER_ANNOTATION}: \"true\" to take it over on purpose)"
    )]
    NotOwner { domain: String, owner: String },
    #[error("the item for {domain} is malformed: {problems}")]
    Malformed { domain: String, problems: String },
    #[error("DynamoDB request failed: {0}")]
    Aws(String),
}

impl StateError {
    /// A condition reason (CamelCase).
    pub fn reason(&self) -> &'static str {
        match self {
            StateError::TableMissing { .. } => "TableMissing",
            StateError::WrongKey { .. } => "TableWrongKey",
            StateError::NotActive(_) => "TableNotActive",
            StateError::Conflict(_) => "WriteConflict",
            StateError::Malformed { .. } => "ItemMalformed",
            StateError::NotOwner { .. } => "NotOwner",
            StateError::Aws(_) => "DynamoDBUnavailable",
        }
    }

    /// Whether the error is about one item only (the table itself is usable).
    pub fn is_per_item(&self) -> bool {
        matches!(
            self,
            StateError::Conflict(_) | StateError::Malformed { .. } | StateError::NotOwner { .. }
        )
    }
}

/// What a write is based on.
#[derive(Clone, Copy, Debug)]
pub enum Base<'a> {
    /// No item is stored. `lost`: the item this process last knew, when it went missing (the
    /// table was emptied or re-created, or the item deleted by hand): version and `event_seq`
    /// go on from it, and the event reports the change from it.
    Absent {
        lost: Option<&'a Item>,
    },
    Item(&'a Item),
    Malformed(&'a Malformed),
}

/// What is known of the stored item before a write: read from the table, or cached.
#[derive(Clone, Debug)]
#[allow(clippy::large_enum_variant)] // one per write, on the stack
enum Current {
    Absent,
    Item(Item),
    Malformed(Box<Malformed>),
}

impl Current {
    fn from_read(read: Option<Stored>) -> Current {
        match read {
            None => Current::Absent,
            Some(Ok(i)) => Current::Item(i),
            Some(Err(m)) => Current::Malformed(m),
        }
    }
}

fn aws<E: std::error::Error + 'static, R: std::fmt::Debug>(
    e: aws_sdk_dynamodb::error::SdkError<E, R>,
) -> StateError {
    StateError::Aws(aws_sdk_dynamodb::error::DisplayErrorContext(e).to_string())
}

/// One state table in one region.
#[derive(Clone)]
pub struct StateTable {
    client: Client,
    name: String,
    region: String,
}

impl StateTable {
    pub fn new(client: Client, name: &str, region: &str) -> Self {
        Self {
            client,
            name: name.to_owned(),
            region: region.to_owned(),
        }
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn region(&self) -> &str {
        &self.region
    }

    /// Checks the table exists with the right key; with `create`, creates it when missing and
    /// asks (UpdateTable) for each replica region it does not list yet. A replica that cannot be
    /// requested does not stop the table being used in its home region: it is reported in the
    /// returned outcomes.
    pub async fn ensure(
        &self,
        create: bool,
        replicas: &[String],
    ) -> Result<Vec<ReplicaOutcome>, StateError> {
        let existing = self.check(create).await?;
        if !create {
            return Ok(Vec::new());
        }
        let mut outcomes = Vec::with_capacity(replicas.len());
        for region in replicas {
            let result = if existing.contains(region) {
                Ok(ReplicaState::Present)
            } else {
                self.request_replica(region)
                    .await
                    .map(|()| ReplicaState::Requested)
            };
            outcomes.push(ReplicaOutcome {
                region: region.clone(),
                result,
            });
        }
        Ok(outcomes)
    }

    async fn request_replica(&self, region: &str) -> Result<(), String> {
        let action = CreateReplicationGroupMemberAction::builder()
            .region_name(region)
            .build()
            .map_err(|e| e.to_string())?;
        self.client
            .update_table()
            .table_name(&self.name)
            .replica_updates(ReplicationGroupUpdate::builder().create(action).build())
            .send()
            .await
            .map_err(|e| aws_sdk_dynamodb::error::DisplayErrorContext(e).to_string())?;
        tracing::info!(table = %self.name, replica = %region, "asked for a state table replica");
        Ok(())
    }

    /// Describes (or, with `create`, creates) the table; returns the replica regions it lists.
    async fn check(&self, create: bool) -> Result<Vec<String>, StateError> {
        match self
            .client
            .describe_table()
            .table_name(&self.name)
            .send()
            .await
        {
            Ok(out) => {
                let Some(table) = out.table else {
                    return Err(StateError::Aws("DescribeTable returned no table".into()));
                };
                let keys = table.key_schema();
                let ok = keys.len() == 1
                    && keys[0].attribute_name() == KEY
                    && keys[0].key_type() == &KeyType::Hash;
                if !ok {
                    let found = keys
                        .iter()
                        .map(|k| format!("{} ({})", k.attribute_name(), k.key_type().as_str()))
                        .collect::<Vec<_>>()
                        .join(", ");
                    return Err(StateError::WrongKey {
                        table: self.name.clone(),
                        found,
                    });
                }
                match table.table_status() {
                    Some(TableStatus::Active) | Some(TableStatus::Updating) | None => Ok(table
                        .replicas()
                        .iter()
                        .filter_map(|r| r.region_name().map(str::to_owned))
                        .collect()),
                    Some(_) => Err(StateError::NotActive(self.name.clone())),
                }
            }
            Err(e)
                if e.as_service_error()
                    .is_some_and(|s| s.is_resource_not_found_exception()) =>
            {
                if !create {
                    return Err(StateError::TableMissing {
                        table: self.name.clone(),
                        region: self.region.clone(),
                    });
                }
                self.create().await.map(|()| Vec::new())
            }
            Err(e) => Err(aws(e)),
        }
    }

    async fn create(&self) -> Result<(), StateError> {
        let build = |e: aws_sdk_dynamodb::error::BuildError| StateError::Aws(e.to_string());
        let result = self
            .client
            .create_table()
            .table_name(&self.name)
            .attribute_definitions(
                AttributeDefinition::builder()
                    .attribute_name(KEY)
                    .attribute_type(ScalarAttributeType::S)
                    .build()
                    .map_err(build)?,
            )
            .key_schema(
                KeySchemaElement::builder()
                    .attribute_name(KEY)
                    .key_type(KeyType::Hash)
                    .build()
                    .map_err(build)?,
            )
            .billing_mode(BillingMode::PayPerRequest)
            // Global tables replicate through streams of new and old images.
            .stream_specification(
                StreamSpecification::builder()
                    .stream_enabled(true)
                    .stream_view_type(StreamViewType::NewAndOldImages)
                    .build()
                    .map_err(build)?,
            )
            .send()
            .await;
        match result {
            Ok(_) => {}
            Err(e)
                if e.as_service_error()
                    .is_some_and(|s| s.is_resource_in_use_exception()) => {}
            Err(e) => return Err(aws(e)),
        }
        tracing::info!(table = %self.name, region = %self.region, "created the state table");
        Ok(())
    }

    /// Reads an item (strongly consistent).
    pub async fn get(&self, domain: &str) -> Result<Option<Stored>, StateError> {
        let out = self
            .client
            .get_item()
            .table_name(&self.name)
            .key(KEY, AttributeValue::S(domain.to_owned()))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| self.read_error(e))?;
        Ok(out.item.as_ref().map(Item::from_attributes))
    }

    /// A failed read; a table that has gone is `TableMissing`, so it is checked (and, with
    /// `create`, created) again.
    fn read_error<E, R>(&self, e: aws_sdk_dynamodb::error::SdkError<E, R>) -> StateError
    where
        E: std::error::Error + aws_sdk_dynamodb::error::ProvideErrorMetadata + 'static,
        R: std::fmt::Debug,
    {
        if e.as_service_error()
            .and_then(|s| s.code())
            .is_some_and(|c| c == "ResourceNotFoundException")
        {
            return StateError::TableMissing {
                table: self.name.clone(),
                region: self.region.clone(),
            };
        }
        aws(e)
    }

    /// Writes `desired` over `base` as the next version, only if the stored item is still
    /// `base` (same `version`; absent; or the same malformed `version`). An UpdateItem rather
    /// than a PutItem, so `announced_version`, which the SNS worker advances on its own, is
    /// never set back: a write that may settle its announcement (see [`Desired::settles`];
    /// `announce`: the ClusteredStream has a topic) moves it to the new version, otherwise it
    /// is left as it is (0 on a new or repaired item). `event_seq` advances when the write
    /// changes health or open state. A malformed item is rewritten whole.
    pub async fn put(
        &self,
        desired: &Desired,
        base: Base<'_>,
        announce: bool,
    ) -> Result<Item, StateError> {
        let (prior, malformed) = match base {
            Base::Absent { lost } => (lost, None),
            Base::Item(c) => (Some(c), None),
            Base::Malformed(m) => (None, Some(m)),
        };
        let overflow = || StateError::Malformed {
            domain: desired.domain.clone(),
            problems: "version is at its maximum".into(),
        };
        let changes = desired.changes_state(prior);
        let (version, event_seq) = match (malformed, prior) {
            (Some(m), _) => (m.next_version, m.next_event_seq),
            (None, Some(p)) => (
                p.version.checked_add(1).ok_or_else(overflow)?,
                if changes {
                    p.sequence().checked_add(1).ok_or_else(overflow)?
                } else {
                    p.sequence()
                },
            ),
            (None, None) => (1, 1),
        };
        let settled = match base {
            Base::Malformed(_) => !announce,
            _ => desired.settles(prior, announce),
        };
        let updated_at = jiff::Timestamp::now().to_string();
        let (mut attrs, mut remove) = desired.to_attributes(&updated_at, version);
        attrs.remove(KEY);
        attrs.insert(
            EVENT_SEQ.to_owned(),
            AttributeValue::N(event_seq.to_string()),
        );
        match prior {
            Some(p) => {
                attrs.insert(
                    PREVIOUS_OPEN.to_owned(),
                    AttributeValue::Bool(p.desired.distro_open),
                );
                match p.desired.healthy {
                    Some(h) => {
                        attrs.insert(PREVIOUS_FRESH.to_owned(), AttributeValue::Bool(h));
                    }
                    None => remove.push(PREVIOUS_FRESH),
                }
            }
            None => remove.extend([PREVIOUS_OPEN, PREVIOUS_FRESH]),
        }
        let mut names = HashMap::new();
        let mut values = HashMap::new();
        let mut sets = Vec::with_capacity(attrs.len() + 1);
        for (i, (name, value)) in attrs.into_iter().enumerate() {
            sets.push(format!("#a{i} = :a{i}"));
            names.insert(format!("#a{i}"), name);
            values.insert(format!(":a{i}"), value);
        }
        let removes: Vec<String> = remove
            .iter()
            .enumerate()
            .map(|(i, name)| {
                names.insert(format!("#r{i}"), (*name).to_owned());
                format!("#r{i}")
            })
            .collect();
        names.insert("#ann".to_owned(), ANNOUNCED.to_owned());
        if settled {
            sets.push("#ann = :version".to_owned());
            values.insert(
                ":version".to_owned(),
                AttributeValue::N(version.to_string()),
            );
        } else if malformed.is_some() {
            sets.push("#ann = :zero".to_owned());
            values.insert(":zero".to_owned(), AttributeValue::N("0".into()));
        } else {
            sets.push("#ann = if_not_exists(#ann, :zero)".to_owned());
            values.insert(":zero".to_owned(), AttributeValue::N("0".into()));
        }
        let condition = match base {
            Base::Absent { .. } => {
                names.insert("#k".to_owned(), KEY.to_owned());
                "attribute_not_exists(#k)"
            }
            Base::Item(c) => {
                names.insert("#v".to_owned(), VERSION.to_owned());
                values.insert(
                    ":expected".to_owned(),
                    AttributeValue::N(c.version.to_string()),
                );
                // The original system's items carry no version at all.
                if c.version == 0 {
                    "attribute_not_exists(#v) OR #v = :expected"
                } else {
                    "#v = :expected"
                }
            }
            Base::Malformed(m) => {
                names.insert("#v".to_owned(), VERSION.to_owned());
                match &m.raw_version {
                    Some(raw) => {
                        values.insert(":expected".to_owned(), raw.clone());
                        "#v = :expected"
                    }
                    None => {
                        names.insert("#k".to_owned(), KEY.to_owned());
                        "attribute_exists(#k) AND attribute_not_exists(#v)"
                    }
                }
            }
        };
        let mut expression = format!("SET {}", sets.join(", "));
        if !removes.is_empty() {
            expression.push_str(&format!(" REMOVE {}", removes.join(", ")));
        }
        let result = self
            .client
            .update_item()
            .table_name(&self.name)
            .key(KEY, AttributeValue::S(desired.domain.clone()))
            .update_expression(expression)
            .condition_expression(condition)
            .set_expression_attribute_names(Some(names))
            .set_expression_attribute_values(Some(values))
            .send()
            .await;
        match result {
            Ok(_) => Ok(Item {
                desired: desired.clone(),
                updated_at,
                version,
                announced_version: Some(if settled {
                    version
                } else {
                    match base {
                        Base::Item(c) => c.announced_version.unwrap_or(0),
                        _ => 0,
                    }
                }),
                previous: prior.map(Item::state),
                event_seq: Some(event_seq),
                owner: Some(desired.owner()),
            }),
            Err(e)
                if e.as_service_error()
                    .is_some_and(|s| s.is_conditional_check_failed_exception()) =>
            {
                Err(StateError::Conflict(desired.domain.clone()))
            }
            Err(e) => Err(self.read_error(e)),
        }
    }

    /// Records that the SNS event of `version` was delivered: `announced_version` only ever
    /// grows, so an acknowledgement arriving late changes nothing.
    pub async fn mark_announced(&self, domain: &str, version: u64) -> Result<(), StateError> {
        let result = self
            .client
            .update_item()
            .table_name(&self.name)
            .key(KEY, AttributeValue::S(domain.to_owned()))
            .update_expression("SET #ann = :v")
            .condition_expression(
                "attribute_exists(#k) AND (attribute_not_exists(#ann) OR #ann < :v)",
            )
            .expression_attribute_names("#ann", ANNOUNCED)
            .expression_attribute_names("#k", KEY)
            .expression_attribute_values(":v", AttributeValue::N(version.to_string()))
            .send()
            .await;
        match result {
            Ok(_) => Ok(()),
            Err(e)
                if e.as_service_error()
                    .is_some_and(|s| s.is_conditional_check_failed_exception()) =>
            {
                Ok(())
            }
            Err(e) => Err(aws(e)),
        }
    }

    /// Every item whose `cluster` attribute is `cluster` (strongly consistent scan).
    pub async fn items_of_cluster(&self, cluster: &str) -> Result<Vec<Item>, StateError> {
        let mut items = Vec::new();
        let mut start = None;
        for _ in 0..MAX_SCAN_PAGES {
            let out = self
                .client
                .scan()
                .table_name(&self.name)
                .consistent_read(true)
                .filter_expression("#c = :c")
                .expression_attribute_names("#c", "cluster")
                .expression_attribute_values(":c", AttributeValue::S(cluster.to_owned()))
                .set_exclusive_start_key(start)
                .send()
                .await
                .map_err(|e| self.read_error(e))?;
            for attrs in out.items() {
                match Item::from_attributes(attrs) {
                    Ok(item) => items.push(item),
                    // Repaired when its instance writes it; not retired meanwhile.
                    Err(m) => tracing::warn!(table = %self.name, domain = %m.domain,
                        problems = %m.describe(), "skipping a malformed state-table item"),
                }
            }
            start = out.last_evaluated_key;
            if start.is_none() {
                return Ok(items);
            }
        }
        Err(StateError::Aws(format!(
            "table {} has more than {MAX_SCAN_PAGES} pages of items; not scanning further",
            self.name
        )))
    }

    /// Brings the item to `desired` (with [`Desired::over`] the stored item): reads (unless a
    /// fresh `cached` copy is given), writes when it differs or is malformed, and on a conflict
    /// re-reads and tries again (at most three times). `known` is the item this process last
    /// knew, when its cached copy has expired: if the table no longer holds it as it was (it is
    /// missing, or someone changed it), the write says so in [`Synced::outside_change`], and a
    /// missing item's version and `event_seq` go on from it.
    pub async fn sync(
        &self,
        desired: &Desired,
        cached: Option<Item>,
        known: Option<&Item>,
        announce: bool,
        take_over: bool,
    ) -> Result<Synced, StateError> {
        let (mut current, read) = match cached {
            Some(c) => (Current::Item(c), None),
            None => {
                let read = self.get(&desired.domain).await?;
                let as_item = read.clone().and_then(Result::ok);
                (Current::from_read(read), as_item)
            }
        };
        let outside = match (&current, known) {
            (_, None) => None,
            (Current::Absent, Some(_)) => Some(MISSING.into()),
            (Current::Malformed(_), Some(_)) => None,
            (Current::Item(now), Some(k)) => {
                let diff = k.desired.differences(&now.desired);
                if now.version != k.version && diff.is_empty() {
                    Some(format!("version: {} (expected {})", now.version, k.version))
                } else if diff.is_empty() {
                    None
                } else {
                    Some(diff.join(", "))
                }
            }
        };
        for _ in 0..3 {
            let (base, prior) = match &current {
                Current::Absent => (Base::Absent { lost: known }, known),
                Current::Item(c) => (Base::Item(c), Some(c)),
                Current::Malformed(m) => (Base::Malformed(m.as_ref()), None),
            };
            let want = desired.over(prior);
            let owner = match &current {
                Current::Absent => None,
                Current::Item(c) => Some(c.owner.as_deref()),
                Current::Malformed(m) => m.owner.as_deref().map(Some),
            };
            if let Some(owner) = owner
                && !want.may_write_over(owner, take_over)
            {
                return Err(StateError::NotOwner {
                    domain: desired.domain.clone(),
                    owner: owner.unwrap_or("the original system (no owner)").to_owned(),
                });
            }
            if let Current::Item(c) = &current
                && want.matches(c)
            {
                return Ok(Synced {
                    item: c.clone(),
                    previous: None,
                    written: false,
                    read,
                    repaired: None,
                    outside_change: None,
                });
            }
            match self.put(&want, base, announce).await {
                Ok(item) => {
                    let repaired = match &current {
                        Current::Malformed(m) => Some(m.as_ref().clone()),
                        _ => None,
                    };
                    return Ok(Synced {
                        item,
                        previous: prior.cloned(),
                        written: true,
                        read,
                        repaired,
                        outside_change: outside,
                    });
                }
                Err(StateError::Conflict(_)) => {
                    current = Current::from_read(self.get(&desired.domain).await?);
                }
                Err(e) => return Err(e),
            }
        }
        Err(StateError::Conflict(desired.domain.clone()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_unclaimed_item_is_closed_only_after_the_grace_and_a_claim_again_forgets_it() {
        use std::time::{Duration, Instant};
        let grace = Duration::from_secs(10);
        let t0 = Instant::now();
        let mut since = std::collections::HashMap::new();
        // First found unclaimed: nothing due, wait the whole grace.
        assert_eq!(
            retire_due(&mut since, &["a", "b"], t0, grace),
            (vec![], Some(grace))
        );
        // b claimed again (the teardown went the other way, or the instance came back).
        let t4 = t0 + Duration::from_secs(4);
        assert_eq!(
            retire_due(&mut since, &["a"], t4, grace),
            (vec![], Some(Duration::from_secs(6)))
        );
        assert!(!since.contains_key("b"));
        // b unclaimed again starts over; a is due at the grace.
        let t10 = t0 + grace;
        assert_eq!(
            retire_due(&mut since, &["a", "b"], t10, grace),
            (vec!["a".to_owned()], Some(Duration::from_secs(10)))
        );
        // Nothing unclaimed: nothing kept.
        assert_eq!(retire_due(&mut since, &[], t10, grace), (vec![], None));
        assert!(since.is_empty());
    }

    fn desired() -> Desired {
        Desired {
            domain: "d1.cloudfront.net".into(),
            distro_open: true,
            desired_open: true,
            healthy: Some(true),
            region: "us-east-1".into(),
            cluster: "live/event".into(),
            name: "live/event-us-east-1".into(),
            reason: "DesiredOpen".into(),
        }
    }

    #[test]
    fn attributes_round_trip_and_keep_the_original_names() {
        let d = desired();
        let (attrs, remove) = d.to_attributes("2026-01-01T00:00:00Z", 7);
        assert!(remove.is_empty());
        for k in [
            "domain",
            "distro_open",
            "playlist_fresh",
            "stale",
            "desired_open",
            "version",
            "updated_at",
        ] {
            assert!(attrs.contains_key(k), "{k}");
        }
        assert_eq!(attrs["stale"], AttributeValue::Bool(false));
        let item = Item::from_attributes(&attrs).unwrap();
        assert_eq!(item.version, 7);
        assert!(d.matches(&item));
    }

    #[test]
    fn an_item_from_the_original_system_is_read() {
        // The original wrote only domain, distro_open and stale.
        let attrs = HashMap::from([
            (
                KEY.to_owned(),
                AttributeValue::S("d1.cloudfront.net".into()),
            ),
            ("distro_open".to_owned(), AttributeValue::Bool(false)),
            ("stale".to_owned(), AttributeValue::Bool(true)),
        ]);
        let item = Item::from_attributes(&attrs).unwrap();
        assert!(!item.desired.distro_open && !item.desired.desired_open);
        assert_eq!(item.desired.healthy, Some(false));
        assert_eq!(item.version, 0);
        assert!(!desired().matches(&item));
    }

    #[test]
    fn only_unclaimed_items_not_yet_retired_are_retired() {
        let item = |domain: &str, reason: &str, open: bool| Item {
            desired: Desired {
                domain: domain.into(),
                distro_open: open,
                reason: reason.into(),
                ..desired()
            },
            updated_at: "t".into(),
            version: 3,
            announced_version: Some(3),
            previous: None,
            event_seq: None,
            owner: Some(desired().owner()),
        };
        let items = vec![
            item("kept.cloudfront.net", "DesiredOpen", true),
            item("gone.cloudfront.net", "DesiredOpen", true),
            item("gone-closed.cloudfront.net", "DesiredClosed", false),
            item("retired.cloudfront.net", REMOVED_REASON, false),
        ];
        let members = std::collections::BTreeSet::from(["kept.cloudfront.net".to_owned()]);
        let domains: Vec<&str> = to_retire(&items, &members)
            .iter()
            .map(|i| i.desired.domain.as_str())
            .collect();
        assert_eq!(
            domains,
            ["gone.cloudfront.net", "gone-closed.cloudfront.net"]
        );
        let retired = items[1].retired();
        assert!(!retired.distro_open);
        assert!(retired.desired_open, "what the spec asked is kept");
        assert_eq!(retired.reason, REMOVED_REASON);
        assert_eq!(retired.name, items[1].desired.name);
    }

    #[test]
    fn only_a_change_owed_an_event_and_not_confirmed_is_replayed() {
        let open = InstanceState {
            open: true,
            healthy: Some(true),
        };
        let closed = InstanceState {
            open: false,
            healthy: Some(true),
        };
        let mut item = Item {
            desired: Desired {
                distro_open: false,
                ..desired()
            },
            updated_at: "t".into(),
            version: 5,
            announced_version: Some(4),
            previous: Some(open.clone()),
            event_seq: None,
            owner: None,
        };
        assert_eq!(
            item.unannounced_change(),
            Some((Some(open.clone()), closed.clone()))
        );
        // Delivered, or written before the operator tracked deliveries: nothing to replay.
        item.announced_version = Some(5);
        assert_eq!(item.unannounced_change(), None);
        item.announced_version = None;
        assert_eq!(item.unannounced_change(), None);
        // A change that owed no event (only the reason moved) is not replayed.
        item.announced_version = Some(4);
        item.previous = Some(closed.clone());
        assert_eq!(item.unannounced_change(), None);
        // A new item whose registration was not delivered.
        item.previous = None;
        assert_eq!(item.unannounced_change(), Some((None, closed)));
    }

    #[test]
    fn a_write_settles_its_announcement_only_when_it_owes_no_event() {
        let d = desired();
        let same = Item::from_attributes(&d.to_attributes("t", 2).0).unwrap();
        assert!(d.settles(Some(&same), true), "no change of state");
        assert!(!d.settles(None, true), "a new item is announced");
        let mut closed = d.clone();
        closed.distro_open = false;
        assert!(!closed.settles(Some(&same), true));
        assert!(
            closed.settles(Some(&same), false),
            "no topic: nothing is owed"
        );
    }

    #[test]
    fn a_write_that_owes_nothing_does_not_settle_a_change_still_owed() {
        let d = desired();
        let mut owed = Item::from_attributes(&d.to_attributes("t", 5).0).unwrap();
        owed.announced_version = Some(4);
        assert!(!d.changes_state(Some(&owed)));
        assert!(
            !d.settles(Some(&owed), true),
            "version 5's event is still owed"
        );
        owed.announced_version = Some(5);
        assert!(d.settles(Some(&owed), true));
    }

    fn stale_item() -> Item {
        let mut d = desired();
        d.healthy = Some(false);
        d.distro_open = false;
        d.reason = "FailedOver".into();
        Item::from_attributes(&d.to_attributes("t", 9).0).unwrap()
    }

    #[test]
    fn no_verdict_keeps_the_recorded_health() {
        // After a restart the instance has no verdict yet: the stale item stays stale, and
        // nothing needs writing.
        let stored = stale_item();
        let mut d = stored.desired.clone();
        d.healthy = None;
        let want = d.over(Some(&stored));
        assert_eq!(want.healthy, Some(false));
        assert!(want.matches(&stored));
        assert!(!want.changes_state(Some(&stored)));
        // Unknown is not fresh: without `over`, it matches neither fresh nor stale.
        assert!(!d.matches(&stored));
        let mut fresh = stored.clone();
        fresh.desired.healthy = Some(true);
        assert!(!d.matches(&fresh));
    }

    #[test]
    fn a_new_item_without_a_verdict_stores_no_health() {
        let mut d = desired();
        d.healthy = None;
        let want = d.over(None);
        let (attrs, remove) = want.to_attributes("t", 1);
        assert!(!attrs.contains_key("playlist_fresh") && !attrs.contains_key("stale"));
        assert_eq!(remove, ["playlist_fresh", "stale"]);
        let item = Item::from_attributes(&attrs).unwrap();
        assert_eq!(item.desired.healthy, None);
        assert!(want.matches(&item));
    }

    fn with(attr: &str, v: AttributeValue) -> HashMap<String, AttributeValue> {
        let mut attrs = desired().to_attributes("t", 3).0;
        attrs.insert(attr.to_owned(), v);
        attrs
    }

    fn problem_of(attrs: &HashMap<String, AttributeValue>) -> Malformed {
        *Item::from_attributes(attrs).expect_err("malformed")
    }

    #[test]
    fn numbers_out_of_range_are_malformed_never_zero_or_a_panic() {
        for bad in [
            AttributeValue::N(u64::MAX.to_string()),
            AttributeValue::N("18446744073709551616".into()),
            AttributeValue::N("99999999999999999999999999999999999999".into()),
            AttributeValue::N("-1".into()),
            AttributeValue::N("1.5".into()),
            AttributeValue::S("7".into()),
        ] {
            let m = problem_of(&with("version", bad.clone()));
            assert_eq!(m.problems[0].attribute, "version", "{bad:?}");
            assert!(m.describe().starts_with("version "), "{}", m.describe());
            assert_eq!(m.raw_version, Some(bad), "the repair is conditional on it");
            assert_eq!(m.next_version, 1);
        }
        let m = problem_of(&with("event_seq", AttributeValue::N("-3".into())));
        assert_eq!(m.problems[0].attribute, "event_seq");
        assert_eq!((m.next_version, m.next_event_seq), (4, 4));
        let m = problem_of(&with(ANNOUNCED, AttributeValue::S("x".into())));
        assert_eq!(m.problems[0].attribute, ANNOUNCED);
        // The largest accepted version can still be incremented.
        let ok = Item::from_attributes(&with(
            "version",
            AttributeValue::N((u64::MAX - 1).to_string()),
        ))
        .unwrap();
        assert_eq!(ok.version, u64::MAX - 1);
    }

    #[test]
    fn booleans_stored_as_strings_are_malformed_not_true() {
        let m = problem_of(&with("distro_open", AttributeValue::S("false".into())));
        assert_eq!(m.problems[0].attribute, "distro_open");
        assert!(
            m.describe().contains("the string \"false\""),
            "{}",
            m.describe()
        );
        let mut attrs = desired().to_attributes("t", 3).0;
        attrs.remove("distro_open");
        assert_eq!(problem_of(&attrs).problems[0].attribute, "distro_open");
        let m = problem_of(&with("stale", AttributeValue::Bool(true)));
        assert_eq!(
            m.problems[0].attribute, "stale",
            "contradicts playlist_fresh"
        );
        let m = problem_of(&with("region", AttributeValue::N("1".into())));
        assert_eq!(m.problems[0].attribute, "region");
    }

    #[test]
    fn the_event_sequence_falls_back_to_the_version_of_older_items() {
        let mut item = stale_item();
        assert_eq!(item.event_seq, None);
        assert_eq!(item.sequence(), 9);
        item.event_seq = Some(4);
        assert_eq!(item.sequence(), 4);
    }

    #[test]
    fn differences_name_the_attributes() {
        let a = desired();
        let mut b = desired();
        b.distro_open = false;
        assert_eq!(
            a.differences(&b),
            ["distro_open: false (expected true)".to_owned()]
        );
        assert!(a.differences(&a).is_empty());
    }

    #[test]
    fn only_the_owner_writes_an_item_unless_it_is_taken_over() {
        let d = desired();
        assert_eq!(d.owner(), "live/event/event-us-east-1");
        let item = Item::from_attributes(&d.to_attributes("t", 2).0).unwrap();
        assert_eq!(item.owner.as_deref(), Some("live/event/event-us-east-1"));
        assert!(d.may_write_over(item.owner.as_deref(), false));
        let mut intruder = d.clone();
        intruder.cluster = "t12/evil".into();
        intruder.name = "t12/evil-east".into();
        assert!(!intruder.may_write_over(item.owner.as_deref(), false));
        assert!(intruder.may_write_over(item.owner.as_deref(), true));
        // Items written before the owner attribute: owned by their cluster and name.
        let mut attrs = d.to_attributes("t", 2).0;
        attrs.remove(OWNER);
        let older = Item::from_attributes(&attrs).unwrap();
        assert_eq!(older.owner, item.owner);
        // An item of the original system is taken over only on purpose.
        assert!(!d.may_write_over(None, false));
        assert!(d.may_write_over(None, true));
    }
}
