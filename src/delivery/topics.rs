//! MQTT topic names: `<prefix>/<site>/<instrument>/{measurement,status,event}`.
//!
//! The instrument id sits at a fixed level so a broker ACL can match it against the client
//! certificate's CN (`pattern write lumiq/v1/+/%u/#`). Owns validation of the levels; does
//! not own ACLs.

use super::DeliveryError;

/// The default topic prefix (protocol name and version).
pub const DEFAULT_PREFIX: &str = "lumiq/v1";

/// The topics of one instrument.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Topics {
    base: String,
    site: String,
    instrument_id: String,
}

impl Topics {
    /// `prefix` may contain `/`; `site` and `instrument_id` are single topic levels.
    pub fn new(prefix: &str, site: &str, instrument_id: &str) -> Result<Topics, DeliveryError> {
        let bad_level = |what: &str, v: &str| -> Option<DeliveryError> {
            if v.is_empty() || v.contains(['/', '+', '#', '\0']) {
                Some(DeliveryError::Config(format!(
                    "{what} {v:?} cannot be an MQTT topic level: it must be non-empty and \
                     contain none of '/', '+', '#'"
                )))
            } else {
                None
            }
        };
        if let Some(e) =
            bad_level("site", site).or_else(|| bad_level("instrument id", instrument_id))
        {
            return Err(e);
        }
        let prefix = prefix.trim_end_matches('/');
        if prefix.is_empty() || prefix.contains(['+', '#', '\0']) || prefix.starts_with('/') {
            return Err(DeliveryError::Config(format!(
                "topic prefix {prefix:?}: give levels like \"lumiq/v1\", without wildcards or a \
                 leading '/'"
            )));
        }
        Ok(Topics {
            base: format!("{prefix}/{site}/{instrument_id}"),
            site: site.to_string(),
            instrument_id: instrument_id.to_string(),
        })
    }

    /// `<prefix>/<site>/<instrument>`.
    pub fn base(&self) -> &str {
        &self.base
    }
    pub fn site(&self) -> &str {
        &self.site
    }
    pub fn instrument_id(&self) -> &str {
        &self.instrument_id
    }
    /// QoS 1, not retained: one envelope per acquisition.
    pub fn measurement(&self) -> String {
        format!("{}/measurement", self.base)
    }
    /// QoS 1, retained: online/offline with the boot id; the last will sets it offline.
    pub fn status(&self) -> String {
        format!("{}/status", self.base)
    }
    /// QoS 1, not retained: calibration, QC, fault and delivery events.
    pub fn event(&self) -> String {
        format!("{}/event", self.base)
    }
    /// Where the LIMS sends acquisition requests (the daemon subscribes when configured).
    pub fn command(&self) -> String {
        format!("{}/command", self.base)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn topics_follow_the_design() {
        let t = Topics::new("lumiq/v1/", "lab-3", "imager-01").unwrap();
        assert_eq!(t.measurement(), "lumiq/v1/lab-3/imager-01/measurement");
        assert_eq!(t.status(), "lumiq/v1/lab-3/imager-01/status");
        assert_eq!(t.event(), "lumiq/v1/lab-3/imager-01/event");
    }

    #[test]
    fn wildcards_and_slashes_are_refused() {
        for (site, inst) in [("a/b", "i"), ("s", "+"), ("s", "#"), ("", "i"), ("s", "")] {
            let e = Topics::new(DEFAULT_PREFIX, site, inst).unwrap_err();
            assert!(e.to_string().contains("topic level"), "{e}");
        }
        assert!(Topics::new("lumiq/+", "s", "i").is_err());
    }
}
