//! The DynamoDB state table: one item per StreamInstance, keyed by `domain` (the CloudFront
//! domain) as the original system keyed it, so its readers (the copilot, dashboards, existing
//! tooling) keep working.
//!
//! Every write is conditional on the item's `version`, which only increases: a write based on a
//! stale read fails and is retried from a fresh read, so a late write never undoes a newer one in
//! this region. (Across regions a global table is last-writer-wins; the operator writes in one
//! region only, `spec.stateTable.region`.) The version doubles as the per-instance sequence
//! number of the SNS events, so it survives operator restarts.

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

/// The `reason` of an item whose StreamInstance was deleted (`clusteredStream` and the domain
/// are immutable, so deletion is the only way out of a ClusteredStream). Such an item is kept,
/// closed, rather than deleted: its version goes on increasing if the domain comes back, so SNS
/// sequence numbers never repeat, and readers see the region closed rather than an unknown
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
    /// Playlists fresh (`None` until the first probe result; stored as fresh then).
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
}

impl Desired {
    fn fresh(&self) -> bool {
        self.healthy != Some(false)
    }

    /// The open state and freshness this asks for, as events report it.
    pub fn state(&self) -> InstanceState {
        InstanceState {
            open: self.distro_open,
            healthy: self.healthy,
        }
    }

    /// Whether writing this over `current` owes no SNS event (`announce`: the ClusteredStream
    /// has a topic), so the write can mark itself announced.
    pub fn settles(&self, current: Option<&Item>, announce: bool) -> bool {
        !announce
            || InstanceEvent::type_for(current.map(Item::state).as_ref(), &self.state()).is_none()
    }

    /// Whether `current` already says what this wants (the timestamp and version aside).
    pub fn matches(&self, current: &Item) -> bool {
        let c = &current.desired;
        c.distro_open == self.distro_open
            && c.desired_open == self.desired_open
            && c.fresh() == self.fresh()
            && c.region == self.region
            && c.cluster == self.cluster
            && c.name == self.name
            && c.reason == self.reason
    }

    fn to_attributes(&self, updated_at: &str, version: u64) -> HashMap<String, AttributeValue> {
        let s = |v: &str| AttributeValue::S(v.to_owned());
        HashMap::from([
            (KEY.to_owned(), s(&self.domain)),
            (
                "distro_open".to_owned(),
                AttributeValue::Bool(self.distro_open),
            ),
            (
                "desired_open".to_owned(),
                AttributeValue::Bool(self.desired_open),
            ),
            (
                "playlist_fresh".to_owned(),
                AttributeValue::Bool(self.fresh()),
            ),
            ("stale".to_owned(), AttributeValue::Bool(!self.fresh())),
            ("region".to_owned(), s(&self.region)),
            ("cluster".to_owned(), s(&self.cluster)),
            ("name".to_owned(), s(&self.name)),
            ("reason".to_owned(), s(&self.reason)),
            ("updated_at".to_owned(), s(updated_at)),
            ("version".to_owned(), AttributeValue::N(version.to_string())),
        ])
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

    /// The change that made `version`, if it was owed an SNS event that was never confirmed
    /// delivered (the operator stopped first): `(old, new)`, `old` being `None` for a new item.
    pub fn unannounced_change(&self) -> Option<(Option<InstanceState>, InstanceState)> {
        if self.announced_version? >= self.version {
            return None;
        }
        let change = (self.previous.clone(), self.state());
        InstanceEvent::type_for(change.0.as_ref(), &change.1).map(|_| change)
    }

    /// Reads an item; attributes an older writer left out take neutral defaults.
    pub fn from_attributes(attrs: &HashMap<String, AttributeValue>) -> Option<Item> {
        let s = |k: &str| {
            attrs
                .get(k)
                .and_then(|v| v.as_s().ok())
                .cloned()
                .unwrap_or_default()
        };
        let b = |k: &str| attrs.get(k).and_then(|v| v.as_bool().ok()).copied();
        let n = |k: &str| {
            attrs
                .get(k)
                .and_then(|v| v.as_n().ok())
                .and_then(|n| n.parse::<u64>().ok())
        };
        let domain = attrs.get(KEY)?.as_s().ok()?.clone();
        let fresh = b("playlist_fresh").or(b("stale").map(|st| !st));
        Some(Item {
            desired: Desired {
                domain,
                distro_open: b("distro_open").unwrap_or(true),
                desired_open: b("desired_open").or(b("distro_open")).unwrap_or(true),
                healthy: fresh,
                region: s("region"),
                cluster: s("cluster"),
                name: s("name"),
                reason: s("reason"),
            },
            updated_at: s("updated_at"),
            version: n("version").unwrap_or(0),
            announced_version: n(ANNOUNCED),
            previous: b(PREVIOUS_OPEN).map(|open| InstanceState {
                open,
                healthy: b(PREVIOUS_FRESH),
            }),
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
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Synced {
    /// The item as stored now.
    pub item: Item,
    /// The item this write replaced (`None` when nothing was written or it is new).
    pub previous: Option<Item>,
    pub written: bool,
    /// The item as first read from the table, when no cached copy was given.
    pub read: Option<Item>,
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
            StateError::Aws(_) => "DynamoDBUnavailable",
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
    pub async fn get(&self, domain: &str) -> Result<Option<Item>, StateError> {
        let out = self
            .client
            .get_item()
            .table_name(&self.name)
            .key(KEY, AttributeValue::S(domain.to_owned()))
            .consistent_read(true)
            .send()
            .await
            .map_err(aws)?;
        Ok(out.item.as_ref().and_then(Item::from_attributes))
    }

    /// Writes `desired` as version `current.version + 1`, only if the stored item is still at
    /// `current`'s version (or absent when `current` is `None`). An UpdateItem rather than a
    /// PutItem, so `announced_version`, which the SNS worker advances on its own, is never set
    /// back: a change that owes no SNS event (see [`Desired::settles`]; `announce`: the
    /// ClusteredStream has a topic) moves it to the new version, otherwise it is left as it is
    /// (0 on a new item).
    pub async fn put(
        &self,
        desired: &Desired,
        current: Option<&Item>,
        announce: bool,
    ) -> Result<Item, StateError> {
        let settled = desired.settles(current, announce);
        let version = current.map_or(1, |c| c.version + 1);
        let updated_at = jiff::Timestamp::now().to_string();
        let mut attrs = desired.to_attributes(&updated_at, version);
        attrs.remove(KEY);
        if let Some(c) = current {
            attrs.insert(
                PREVIOUS_OPEN.to_owned(),
                AttributeValue::Bool(c.desired.distro_open),
            );
            attrs.insert(
                PREVIOUS_FRESH.to_owned(),
                AttributeValue::Bool(c.desired.fresh()),
            );
        }
        let mut names = HashMap::new();
        let mut values = HashMap::new();
        let mut sets = Vec::with_capacity(attrs.len() + 1);
        for (i, (name, value)) in attrs.into_iter().enumerate() {
            sets.push(format!("#a{i} = :a{i}"));
            names.insert(format!("#a{i}"), name);
            values.insert(format!(":a{i}"), value);
        }
        names.insert("#ann".to_owned(), ANNOUNCED.to_owned());
        if settled {
            sets.push("#ann = :version".to_owned());
            values.insert(
                ":version".to_owned(),
                AttributeValue::N(version.to_string()),
            );
        } else {
            sets.push("#ann = if_not_exists(#ann, :zero)".to_owned());
            values.insert(":zero".to_owned(), AttributeValue::N("0".into()));
        }
        let condition = match current {
            None => {
                names.insert("#k".to_owned(), KEY.to_owned());
                "attribute_not_exists(#k)"
            }
            Some(c) => {
                names.insert("#v".to_owned(), "version".to_owned());
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
        };
        let result = self
            .client
            .update_item()
            .table_name(&self.name)
            .key(KEY, AttributeValue::S(desired.domain.clone()))
            .update_expression(format!("SET {}", sets.join(", ")))
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
                announced_version: if settled {
                    Some(version)
                } else {
                    Some(current.and_then(|c| c.announced_version).unwrap_or(0))
                },
                previous: current.map(Item::state),
            }),
            Err(e)
                if e.as_service_error()
                    .is_some_and(|s| s.is_conditional_check_failed_exception()) =>
            {
                Err(StateError::Conflict(desired.domain.clone()))
            }
            Err(e) => Err(aws(e)),
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
                .map_err(aws)?;
            items.extend(out.items().iter().filter_map(Item::from_attributes));
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

    /// Brings the item to `desired`: reads (unless `cached` is given), writes when it differs,
    /// and on a conflict re-reads and tries again (at most three times).
    pub async fn sync(
        &self,
        desired: &Desired,
        cached: Option<Item>,
        announce: bool,
    ) -> Result<Synced, StateError> {
        let (mut current, read) = match cached {
            Some(c) => (Some(c), None),
            None => {
                let read = self.get(&desired.domain).await?;
                (read.clone(), read)
            }
        };
        for _ in 0..3 {
            if let Some(c) = &current
                && desired.matches(c)
            {
                return Ok(Synced {
                    item: c.clone(),
                    previous: None,
                    written: false,
                    read,
                });
            }
            match self.put(desired, current.as_ref(), announce).await {
                Ok(item) => {
                    return Ok(Synced {
                        item,
                        previous: current,
                        written: true,
                        read,
                    });
                }
                Err(StateError::Conflict(_)) => current = self.get(&desired.domain).await?,
                Err(e) => return Err(e),
            }
        }
        Err(StateError::Conflict(desired.domain.clone()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
        let attrs = d.to_attributes("2026-01-01T00:00:00Z", 7);
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
        let same = Item::from_attributes(&d.to_attributes("t", 2)).unwrap();
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
    fn unknown_health_is_stored_as_fresh_and_matches_fresh() {
        let mut d = desired();
        d.healthy = None;
        let item = Item::from_attributes(&desired().to_attributes("t", 1)).unwrap();
        assert!(d.matches(&item));
        assert_eq!(
            d.to_attributes("t", 1)["playlist_fresh"],
            AttributeValue::Bool(true)
        );
    }
}
