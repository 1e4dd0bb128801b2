//! Pure decisions: no I/O, no clock. Each function takes what was observed and returns what
//! should be, so it is tested directly; the controller and the AWS shells do the I/O around it.
//!
//! - [`lag`]: whether an instance runs behind the others of its ClusteredStream.
//! - [`master`]: the merged multi-region master playlist.
//! - [`steering`]: the HLS Content Steering manifest.
//! - [`reopen`]: when a reopened region is offered to players again (after the copilot's cache).
//! - [`compose`]: both, from each instance's state and contribution, as the publication stage
//!   and `cvs-operator merge` build them.

pub mod lag;
pub mod master;
pub mod reopen;
pub mod steering;
pub mod tenancy;

use master::{Contribution, MergeError, MergeInput, MergeSettings, Merged, SteeringTag};
use steering::{PathwayState, SteeringDecision};

/// One instance as [`compose`] sees it.
#[derive(Clone, Debug)]
pub struct ComposeInstance<'a> {
    /// StreamInstance name (for messages).
    pub name: &'a str,
    /// Its region.
    pub region: &'a str,
    /// Its pathway ID: the region.
    pub pathway: &'a str,
    /// Its CloudFront domain.
    pub cdn_domain: &'a str,
    /// Effective open state.
    pub open: bool,
    /// Whether its playlists are fresh; `None` before the first probe result.
    pub healthy: Option<bool>,
    /// Its checked master playlist, if one was ever fetched (and is not too old).
    pub contribution: Option<&'a Contribution>,
}

/// Settings of [`compose`].
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ComposeSettings {
    /// Leave closed instances' variants out of the master (unless every instance is closed).
    pub omit_closed: bool,
    /// Steering SERVER-URI and manifest TTL, when steering is enabled.
    pub steering: Option<(String, u32)>,
    /// Scheme of rewritten URIs (`https` unless testing against a local CDN).
    pub cdn_scheme: String,
}

/// The merged master, the steering manifest, and which instances were left out and why.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Composed {
    pub master: Result<Merged, MergeError>,
    pub steering: SteeringDecision,
    /// Instances without a contribution in the master, with the reason (by name).
    pub left_out: Vec<(String, String)>,
}

/// Builds the merged master and the steering manifest. The steering manifest's first pathway is
/// the master's default PATHWAY-ID, so new loads start where steering would send them.
pub fn compose(instances: &[ComposeInstance<'_>], settings: &ComposeSettings) -> Composed {
    // Pathways players cannot know (no contribution, so not in the master) are not listed,
    // unless no instance has a contribution at all.
    let any_contribution = instances.iter().any(|i| i.contribution.is_some());
    let states: Vec<PathwayState> = instances
        .iter()
        .filter(|i| i.contribution.is_some() || !any_contribution)
        .map(|i| PathwayState {
            pathway: i.pathway.to_owned(),
            open: i.open,
            healthy: i.healthy,
        })
        .collect();
    let reload = settings.steering.as_ref().map(|(uri, _)| uri.as_str());
    let ttl = settings.steering.as_ref().map_or(10, |(_, ttl)| *ttl);
    let steering = steering::steering_manifest(&states, ttl, reload);

    let mut left_out = Vec::new();
    let any_open_contribution = instances.iter().any(|i| i.open && i.contribution.is_some());
    let mut inputs = Vec::new();
    for i in instances {
        let Some(contribution) = i.contribution else {
            left_out.push((
                i.name.to_owned(),
                "no usable master playlist yet".to_owned(),
            ));
            continue;
        };
        if settings.omit_closed && !i.open && any_open_contribution {
            left_out.push((
                i.name.to_owned(),
                "closed (closedVariants: Omit)".to_owned(),
            ));
            continue;
        }
        inputs.push(MergeInput {
            region: i.region,
            pathway: i.pathway,
            cdn_domain: i.cdn_domain,
            contribution,
        });
    }
    let default_pathway = steering
        .manifest
        .pathway_priority
        .iter()
        .find(|p| inputs.iter().any(|i| i.pathway == p.as_str()))
        .cloned();
    let merge_settings = MergeSettings {
        cdn_scheme: if settings.cdn_scheme.is_empty() {
            "https".into()
        } else {
            settings.cdn_scheme.clone()
        },
        steering: settings.steering.as_ref().map(|(uri, _)| SteeringTag {
            server_uri: uri.clone(),
            default_pathway,
        }),
    };
    let master = master::merge(&inputs, &merge_settings);
    if let Ok(m) = &master {
        for (pathway, why) in &m.report.rejected {
            if let Some(i) = instances.iter().find(|i| i.pathway == pathway.as_str()) {
                left_out.push((i.name.to_owned(), why.clone()));
            }
        }
    }
    left_out.sort();
    left_out.dedup();
    Composed {
        master,
        steering,
        left_out,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use master::{Limits, parse_contribution};

    const MASTER: &str = "#EXTM3U\n#EXT-X-STREAM-INF:BANDWIDTH=1000000\nv.m3u8\n";

    fn contribution(origin: &str) -> Contribution {
        parse_contribution(MASTER.as_bytes(), origin, &Limits::default()).unwrap()
    }

    fn instance<'a>(
        name: &'a str,
        open: bool,
        healthy: Option<bool>,
        c: Option<&'a Contribution>,
    ) -> ComposeInstance<'a> {
        ComposeInstance {
            name,
            region: name,
            pathway: name,
            cdn_domain: "d.example",
            open,
            healthy,
            contribution: c,
        }
    }

    fn settings(omit_closed: bool) -> ComposeSettings {
        ComposeSettings {
            omit_closed,
            steering: Some(("https://cdn.example/s.json".into(), 5)),
            cdn_scheme: String::new(),
        }
    }

    #[test]
    fn closed_variants_kept_by_default_and_omitted_on_request() {
        let a = contribution("https://a.example/m.m3u8");
        let b = contribution("https://b.example/m.m3u8");
        let both = [
            instance("us-east-1", false, Some(true), Some(&a)),
            instance("us-west-2", true, Some(true), Some(&b)),
        ];
        let kept = compose(&both, &settings(false));
        let text = String::from_utf8(kept.master.unwrap().bytes).unwrap();
        assert!(text.contains("PATHWAY-ID=\"us-east-1\""));
        assert!(text.contains(
            "#EXT-X-CONTENT-STEERING:SERVER-URI=\"https://cdn.example/s.json\",PATHWAY-ID=\"us-west-2\""
        ));
        assert_eq!(kept.steering.manifest.pathway_priority, ["us-west-2"]);

        let omitted = compose(&both, &settings(true));
        let text = String::from_utf8(omitted.master.unwrap().bytes).unwrap();
        assert!(!text.contains("us-east-1"), "{text}");
        assert_eq!(omitted.left_out.len(), 1);

        // Every instance closed: nothing is omitted.
        let closed = [
            instance("us-east-1", false, Some(true), Some(&a)),
            instance("us-west-2", false, Some(true), Some(&b)),
        ];
        let all = compose(&closed, &settings(true));
        assert_eq!(all.master.unwrap().report.pathways.len(), 2);
        assert!(all.steering.all_closed);
    }

    #[test]
    fn never_seen_instances_are_left_out_with_a_reason() {
        let a = contribution("https://a.example/m.m3u8");
        let c = compose(
            &[
                instance("us-east-1", true, Some(true), Some(&a)),
                instance("us-west-2", true, None, None),
            ],
            &settings(false),
        );
        assert_eq!(c.master.unwrap().report.pathways, ["us-east-1"]);
        assert_eq!(
            c.left_out,
            [(
                "us-west-2".to_owned(),
                "no usable master playlist yet".to_owned()
            )]
        );
        assert_eq!(c.steering.manifest.pathway_priority, ["us-east-1"]);
    }
}
