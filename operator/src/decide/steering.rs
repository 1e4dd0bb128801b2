//! The HLS Content Steering manifest (RFC 8216bis section 7): which pathway (region) players
//! should use, in order of preference. A pure function of each pathway's effective state.
//!
//! Order of `PATHWAY-PRIORITY`:
//! 1. open and healthy pathways, by pathway ID;
//! 2. open pathways that are stale or not yet probed, by pathway ID (a player still needs
//!    somewhere to go if every open region is stale; the copilot's 404s only cover closed ones);
//! 3. closed pathways are left out, so players leave them within one TTL.
//!
//! When every pathway is closed (the minOpen guard normally prevents it, but the effective state
//! can momentarily be empty, or a person can delete every open instance), the manifest lists
//! every known pathway, healthy first, and [`SteeringDecision::all_closed`] says so. An empty
//! `PATHWAY-PRIORITY` is not a usable manifest: a player given one has no pathway to fetch from,
//! which would stop playback everywhere at once, while listing every pathway keeps players where
//! they are and leaves closing a region to the copilot's 404s. The operator reports the state;
//! it never answers "nowhere".
//!
//! The serialized form has a fixed key order, so equal decisions give equal bytes and the
//! publication stage can skip unchanged writes.

use serde::Serialize;

/// The state of one pathway as the steering decision needs it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PathwayState {
    /// Pathway ID (the instance's region).
    pub pathway: String,
    /// Effective open state (after the failover policy and minOpen).
    pub open: bool,
    /// Whether its playlists are fresh; `None` before the first probe result.
    pub healthy: Option<bool>,
}

/// A steering manifest, serialized with the field names of the HLS specification.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct SteeringManifest {
    /// Always 1.
    #[serde(rename = "VERSION")]
    pub version: u32,
    /// Seconds before the player reloads the manifest.
    #[serde(rename = "TTL")]
    pub ttl: u32,
    /// Where the next manifest is loaded from, when set.
    #[serde(rename = "RELOAD-URI", skip_serializing_if = "Option::is_none")]
    pub reload_uri: Option<String>,
    /// Pathway IDs, most preferred first.
    #[serde(rename = "PATHWAY-PRIORITY")]
    pub pathway_priority: Vec<String>,
}

impl SteeringManifest {
    /// The manifest as JSON bytes (fixed key order; a trailing newline).
    pub fn to_bytes(&self) -> Vec<u8> {
        // Serializing a struct of strings and integers cannot fail.
        let mut bytes = serde_json::to_vec(self).unwrap_or_default();
        bytes.push(b'\n');
        bytes
    }
}

/// The manifest and how it came about.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SteeringDecision {
    /// The manifest to publish.
    pub manifest: SteeringManifest,
    /// No pathway was open: the manifest lists every pathway (see the module documentation).
    pub all_closed: bool,
}

/// Longest TTL written (one hour), so a bad setting cannot pin players for days.
const MAX_TTL: u32 = 3600;

/// Decides the steering manifest from every pathway's state.
pub fn steering_manifest(
    states: &[PathwayState],
    ttl_seconds: u32,
    reload_uri: Option<&str>,
) -> SteeringDecision {
    let mut sorted: Vec<&PathwayState> = states.iter().collect();
    sorted.sort_by(|a, b| a.pathway.cmp(&b.pathway));
    sorted.dedup_by(|a, b| a.pathway == b.pathway);
    let all_closed = !sorted.iter().any(|s| s.open);
    let candidates = sorted.iter().filter(|s| s.open || all_closed);
    let (healthy, rest): (Vec<&&PathwayState>, Vec<&&PathwayState>) =
        candidates.partition(|s| s.healthy == Some(true));
    let pathway_priority = healthy
        .into_iter()
        .chain(rest)
        .map(|s| s.pathway.clone())
        .collect();
    SteeringDecision {
        manifest: SteeringManifest {
            version: 1,
            ttl: ttl_seconds.clamp(1, MAX_TTL),
            reload_uri: reload_uri.map(str::to_owned),
            pathway_priority,
        },
        all_closed: all_closed && !states.is_empty(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn state(p: &str, open: bool, healthy: Option<bool>) -> PathwayState {
        PathwayState {
            pathway: p.into(),
            open,
            healthy,
        }
    }

    #[test]
    fn healthy_first_stale_last_closed_out() {
        let d = steering_manifest(
            &[
                state("us-west-2", true, Some(false)),
                state("eu-west-1", false, Some(true)),
                state("us-east-1", true, Some(true)),
                state("ap-south-1", true, None),
                state("ca-central-1", true, Some(true)),
            ],
            10,
            Some("https://cdn.example.com/steering.json"),
        );
        assert!(!d.all_closed);
        assert_eq!(
            d.manifest.pathway_priority,
            ["ca-central-1", "us-east-1", "ap-south-1", "us-west-2"]
        );
        assert_eq!(
            String::from_utf8(d.manifest.to_bytes()).unwrap(),
            "{\"VERSION\":1,\"TTL\":10,\"RELOAD-URI\":\"https://cdn.example.com/steering.json\",\
             \"PATHWAY-PRIORITY\":[\"ca-central-1\",\"us-east-1\",\"ap-south-1\",\"us-west-2\"]}\n"
        );
    }

    #[test]
    fn order_of_input_does_not_matter() {
        let a = [
            state("b", true, Some(true)),
            state("a", true, Some(true)),
            state("c", true, Some(false)),
        ];
        let mut b = a.clone();
        b.reverse();
        assert_eq!(
            steering_manifest(&a, 5, None),
            steering_manifest(&b, 5, None)
        );
    }

    #[test]
    fn all_closed_lists_every_pathway_and_says_so() {
        let d = steering_manifest(
            &[
                state("b", false, Some(false)),
                state("a", false, Some(true)),
            ],
            10,
            None,
        );
        assert!(d.all_closed);
        assert_eq!(d.manifest.pathway_priority, ["a", "b"]);
        let none = steering_manifest(&[], 10, None);
        assert!(!none.all_closed);
        assert!(none.manifest.pathway_priority.is_empty());
    }

    #[test]
    fn ttl_is_clamped() {
        assert_eq!(steering_manifest(&[], 0, None).manifest.ttl, 1);
        assert_eq!(steering_manifest(&[], u32::MAX, None).manifest.ttl, 3600);
    }
}
