//! Reading one device: its keys split between core's settings and its
//! adapter's, and each point likewise, with the checks core makes of
//! every point (numeric settings on numeric points, ...).

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use fieldbridge_core::alarm::{AlarmSettings, Expected};
use fieldbridge_core::device::{AdapterDevice, MAX_DECIMALS, PointSource, StaleDefault};
use fieldbridge_core::{
    DeviceId, DeviceSettings, DeviceSpec, PointId, PointSettings, PointSpec, ValueKind,
};
use serde::de::DeserializeOwned;

use super::de::{fields_of, read, unknown_key_message};
use super::load::Loader;
use super::tree::{Kind, Node, join, null_as_empty_map};

impl Loader<'_> {
    pub(super) fn device<D: DeserializeOwned, P: DeserializeOwned + PointSource>(
        &self,
        node: &Node,
        path: &str,
        id: Option<DeviceId>,
        default_poll: Option<Duration>,
        stale_default: fn(&D) -> StaleDefault,
        check_point: fn(&P) -> Result<(), String>,
    ) -> Option<AdapterDevice<D, P>> {
        let mut shared: Vec<&'static str> = fields_of::<D>().to_vec();
        shared.push("points");
        let settings = read::<DeviceSettings>(node, path, &shared, true, self.problems);
        let mut shared: Vec<&'static str> = fields_of::<DeviceSettings>().to_vec();
        shared.push("points");
        let config = read::<D>(node, path, &shared, false, self.problems);

        let ppath = join(path, "points");
        let mut points = BTreeMap::new();
        let mut specs = BTreeMap::new();
        let point_nodes = match node.get("points") {
            None => {
                self.problems
                    .push(&node.origin, path, "a device needs `points`");
                &[][..]
            }
            Some(p) => self.mapping(p, &ppath).unwrap_or(&[]),
        };
        if node.get("points").is_some() && point_nodes.is_empty() {
            self.problems.push(
                &node.get("points").unwrap_or(node).origin,
                &ppath,
                "a device needs at least one point",
            );
        }
        let core_fields = fields_of::<PointSettings>();
        let adapter_fields = fields_of::<P>();
        let mut seen = HashSet::new();
        let mut all_ok = true;
        for (key, pnode) in point_nodes {
            let path = join(&ppath, &key.name);
            if !seen.insert(key.name.as_str()) {
                self.problems.push(
                    &key.origin,
                    &path,
                    format!("duplicate point `{}`", key.name),
                );
                all_ok = false;
                continue;
            }
            let pid = PointId::new(&key.name).map_err(|e| {
                self.problems
                    .push(&key.origin, &path, format!("invalid point id: {e}"));
            });
            let pnode = null_as_empty_map(pnode);
            if pnode.get("name").is_some() {
                self.notes.borrow_mut().push(format!(
                    "{path}.name: a point's `name` is now `label` (`name` still works)"
                ));
            }
            let core = read::<PointSettings>(&pnode, &path, adapter_fields, true, self.problems);
            let own = read::<P>(&pnode, &path, core_fields, false, self.problems);
            let (Ok(pid), Some(core), Some(own)) = (pid, core, own) else {
                all_ok = false;
                continue;
            };
            if let Err(e) = check_point(&own) {
                self.problems.push(&pnode.origin, &path, e);
                all_ok = false;
                continue;
            }
            let mut kind = own.kind();
            // Core turns a scaled integer into a float (see `normalize`):
            // the point carries, and writes take, what users see.
            if kind == ValueKind::Int
                && (core.scale.is_some() || core.offset.is_some_and(|o| o.fract() != 0.0))
            {
                kind = ValueKind::Float;
            }
            if !self.check_point_settings(&pnode, &path, &core, kind) {
                all_ok = false;
                continue;
            }
            specs.insert(
                pid.clone(),
                PointSpec {
                    id: pid.clone(),
                    kind,
                    settings: core,
                },
            );
            points.insert(pid, own);
        }
        let (Some(id), Some(mut settings), Some(config), true) = (id, settings, config, all_ok)
        else {
            return None;
        };
        if !self.check_summary(node, path, &settings, &specs) {
            return None;
        }
        if settings.poll.is_none() {
            settings.poll = default_poll;
        }
        settings.stale_default = stale_default(&config);
        if let Some(poll) = settings.poll
            && poll.is_zero()
        {
            let at = node.get("poll").unwrap_or(node);
            self.problems.push(
                &at.origin,
                &join(path, "poll"),
                "poll must be longer than 0s",
            );
            return None;
        }
        Some(AdapterDevice {
            spec: Arc::new(DeviceSpec {
                id,
                settings,
                points: specs,
            }),
            config,
            points,
        })
    }

    /// Every id in `summary` must be one of the device's points, once.
    fn check_summary(
        &self,
        node: &Node,
        path: &str,
        settings: &DeviceSettings,
        points: &BTreeMap<PointId, PointSpec>,
    ) -> bool {
        let Some(summary) = &settings.summary else {
            return true;
        };
        let list = node.get("summary").unwrap_or(node);
        let items = match &list.kind {
            Kind::Seq(items) => &items[..],
            _ => &[],
        };
        let mut ok = true;
        let mut seen = HashSet::new();
        for (i, id) in summary.iter().enumerate() {
            let at = items.get(i).unwrap_or(list);
            let ipath = format!("{}[{i}]", join(path, "summary"));
            if !points.contains_key(id) {
                let known: Vec<&str> = points.keys().map(PointId::as_str).collect();
                self.problems.push(
                    &at.origin,
                    &ipath,
                    unknown_key_message("point", id.as_str(), &known),
                );
                ok = false;
            } else if !seen.insert(id) {
                self.problems.push(
                    &at.origin,
                    &ipath,
                    format!("`{id}` is in the summary twice"),
                );
                ok = false;
            }
        }
        ok
    }

    fn check_point_settings(
        &self,
        node: &Node,
        path: &str,
        s: &PointSettings,
        kind: ValueKind,
    ) -> bool {
        let mut ok = true;
        let numeric = matches!(kind, ValueKind::Int | ValueKind::Float);
        for (name, set) in [
            ("scale", s.scale.is_some()),
            ("offset", s.offset.is_some()),
            ("deadband", s.deadband.is_some()),
            ("decimals", s.decimals.is_some()),
            ("min", s.min.is_some()),
            ("max", s.max.is_some()),
        ] {
            if set && !numeric {
                let at = node.get(name).unwrap_or(node);
                self.problems.push(
                    &at.origin,
                    &join(path, name),
                    format!("`{name}` applies only to numeric points; this point is {kind}"),
                );
                ok = false;
            }
        }
        if let Some(d) = s.deadband
            && !(d >= 0.0 && d.is_finite())
        {
            let at = node.get("deadband").unwrap_or(node);
            self.problems.push(
                &at.origin,
                &join(path, "deadband"),
                format!("deadband must be 0 or more, found {d}"),
            );
            ok = false;
        }
        if let Some(d) = s.decimals
            && d > MAX_DECIMALS
        {
            let at = node.get("decimals").unwrap_or(node);
            self.problems.push(
                &at.origin,
                &join(path, "decimals"),
                format!("decimals must be 0 to {MAX_DECIMALS}, found {d}"),
            );
            ok = false;
        }
        if let (Some(min), Some(max)) = (s.min, s.max)
            && min > max
        {
            let at = node.get("min").unwrap_or(node);
            self.problems.push(
                &at.origin,
                &join(path, "min"),
                format!("min ({min}) is more than max ({max})"),
            );
            ok = false;
        }
        if let (Some(min), Some(max)) = (s.min_interval, s.max_interval)
            && min > max
        {
            let at = node.get("min_interval").unwrap_or(node);
            self.problems.push(
                &at.origin,
                &join(path, "min_interval"),
                "min_interval must not be longer than max_interval",
            );
            ok = false;
        }
        if let Some(alarm) = &s.alarm {
            let anode = node.get("alarm").unwrap_or(node);
            ok &= self.check_alarm(anode, &join(path, "alarm"), alarm, kind);
        }
        ok
    }

    /// An alarm's limits must fit the point: `above`/`below`/`hysteresis`
    /// on numbers, `equals` on bool, int (an enumeration) or text and of
    /// that kind, `above` over `below` by more than the hysteresis.
    fn check_alarm(&self, node: &Node, path: &str, a: &AlarmSettings, kind: ValueKind) -> bool {
        let mut found: Vec<(&'static str, String)> = Vec::new();
        let numeric = matches!(kind, ValueKind::Int | ValueKind::Float);
        if a.above.is_none() && a.below.is_none() && a.equals.is_none() {
            self.problems.push(
                &node.origin,
                path,
                "an alarm needs a limit: `above`, `below` or `equals`",
            );
            return false;
        }
        for (name, value) in [
            ("above", a.above),
            ("below", a.below),
            ("hysteresis", a.hysteresis),
        ] {
            let Some(v) = value else { continue };
            if !numeric {
                found.push((
                    name,
                    format!("`{name}` applies only to numeric points; this point is {kind}"),
                ));
            } else if !v.is_finite() {
                found.push((name, format!("{name} must be a finite number, found {v}")));
            }
        }
        if found.is_empty() {
            alarm_limits(a, kind, &mut found);
        }
        let ok = found.is_empty();
        for (key, message) in found {
            let at = node.get(key).unwrap_or(node);
            self.problems.push(&at.origin, &join(path, key), message);
        }
        ok
    }
}

/// [`Loader::check_alarm`] of limits that are numbers where they must be.
fn alarm_limits(a: &AlarmSettings, kind: ValueKind, found: &mut Vec<(&'static str, String)>) {
    let mut problem = |key, message| found.push((key, message));
    if let Some(h) = a.hysteresis {
        if h < 0.0 {
            problem(
                "hysteresis",
                format!("hysteresis must be 0 or more, found {h}"),
            );
        } else if a.above.is_none() && a.below.is_none() {
            problem(
                "hysteresis",
                "`hysteresis` applies only to `above` and `below`".to_owned(),
            );
        }
    }
    if let (Some(above), Some(below)) = (a.above, a.below) {
        let h = a.hysteresis.unwrap_or(0.0);
        if above <= below {
            problem(
                "above",
                format!("above ({above}) must be more than below ({below})"),
            );
        } else if h > 0.0 && h >= above - below {
            problem(
                "hysteresis",
                format!(
                    "hysteresis ({h}) must be smaller than above minus below ({}): back \
                     inside one limit by it, a value would be beyond the other",
                    above - below
                ),
            );
        }
    }
    if let Some(expected) = &a.equals {
        let fits = matches!(
            (expected, kind),
            (Expected::Bool(_), ValueKind::Bool)
                | (Expected::Int(_), ValueKind::Int)
                | (Expected::Text(_), ValueKind::Text)
        );
        if kind == ValueKind::Float {
            problem(
                "equals",
                "`equals` applies only to bool, int and text points; this point is \
                 float (use `above` or `below`)"
                    .to_owned(),
            );
        } else if !fits {
            let found = match expected {
                Expected::Bool(b) => format!("the bool {b}"),
                Expected::Int(i) => format!("the number {i}"),
                Expected::Text(t) => format!("the text {t:?}"),
            };
            let hint = match kind {
                ValueKind::Text => " (quote it to compare as text)",
                _ => "",
            };
            problem(
                "equals",
                format!("`equals` must be a value of this {kind} point, found {found}{hint}"),
            );
        }
    }
    if let Some(text) = &a.text
        && text.trim().is_empty()
    {
        problem(
            "text",
            "text must not be empty (leave it out to name the limit)".to_owned(),
        );
    }
}
