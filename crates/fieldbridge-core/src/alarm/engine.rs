//! Alarm evaluation, driven by the normalization engine: every normalized
//! reading of a point with an `alarm:` goes through its [`PointAlarm`]
//! (before deadband and `min_interval` decide what is published), every
//! tick lets hold times and `offline_alert` delays end, and device statuses
//! say which devices are offline. What changes comes out as [`Alert`]s
//! for the bus.
//!
//! No storms: when a device's offline delay ends and every device of its
//! connection that has an `offline_alert` is offline (at least two), one
//! [`AlarmKey::Connection`] alert lists them instead of one per device; it
//! clears, once, when all of them are back. A key raised for the third time
//! within [`FLAP_WINDOW`] is flapping: its transitions still go out (so a
//! sink's list of active alarms is right) but with `notify: false`, and at
//! the end of the window one [`Change::Flapping`] summary is what people
//! get.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use super::text::{self, Ended};
use super::{AlarmKey, Alert, Change, Limit, PointAlarm, Severity, Transition};
use crate::device::{DeviceSpec, Directory, PointSpec};
use crate::event::DeviceStatus;
use crate::id::{ConnectionId, DeviceId, PointId};
use crate::telemetry::{AlarmCleared, AlarmRaised, AlarmsActive, InternalEvent, Telemetry};
use crate::value::{Quality, Value};

/// Raises of one key within this long, counted from the first, make it
/// flap once there are [`FLAP_RAISES`] of them.
pub const FLAP_WINDOW: Duration = Duration::from_secs(60);
/// Raises within [`FLAP_WINDOW`] that make an alarm flap.
pub const FLAP_RAISES: u32 = 3;

/// Offline and connection alerts are warnings: someone should look.
pub const OFFLINE_SEVERITY: Severity = Severity::Warning;

/// A point with an alarm.
#[derive(Debug)]
struct PointEntry {
    device: Arc<DeviceSpec>,
    point: PointId,
    alarm: PointAlarm,
    /// While raised: by which limit, since when the value was beyond it,
    /// and when it was raised.
    raised: Option<(Limit, Instant, Instant)>,
    /// The newest good value, which a reload re-evaluates.
    last_good: Option<Value>,
}

impl PointEntry {
    fn new(device: &Arc<DeviceSpec>, point: &PointSpec) -> Option<Self> {
        let settings = point.settings.alarm.clone()?;
        Some(Self {
            device: Arc::clone(device),
            point: point.id.clone(),
            alarm: PointAlarm::new(settings),
            raised: None,
            last_good: None,
        })
    }

    fn key(&self) -> AlarmKey {
        AlarmKey::Point {
            device: self.device.id.clone(),
            point: self.point.clone(),
        }
    }
}

/// A device with an `offline_alert`.
#[derive(Debug)]
struct Watch {
    device: Arc<DeviceSpec>,
    delay: Duration,
    /// Since when it is offline, why (the first reason), and whether its
    /// own alert is raised (when).
    down: Option<Down>,
}

#[derive(Debug)]
struct Down {
    since: Instant,
    reason: String,
    raised: Option<Instant>,
}

impl Watch {
    fn connection(&self) -> &ConnectionId {
        &self.device.settings.connection
    }
}

/// One connection alert while it lasts.
#[derive(Debug)]
struct Storm {
    /// The devices it lists, by id.
    members: BTreeSet<DeviceId>,
    /// Those of them online again; it clears when all are.
    back: BTreeSet<DeviceId>,
    /// When the first of them went offline.
    began: Instant,
    raised: Instant,
}

/// One key's raises within the flapping window.
#[derive(Debug)]
struct Flap {
    first: Instant,
    times: u32,
    flapping: bool,
    severity: Severity,
    devices: Vec<DeviceId>,
    subject: String,
}

/// Every alarm of a gateway and where it stands; see the module doc.
#[derive(Debug)]
pub(crate) struct Alarms {
    telemetry: Arc<Telemetry>,
    /// Points with an alarm, by device: a reading of a device without one
    /// costs one lookup, and none clones an id.
    points: BTreeMap<DeviceId, BTreeMap<PointId, PointEntry>>,
    watches: BTreeMap<DeviceId, Watch>,
    storms: BTreeMap<ConnectionId, Storm>,
    flaps: HashMap<AlarmKey, Flap>,
    /// What is raised now, for the gauge and flapping summaries.
    active: BTreeMap<AlarmKey, Severity>,
    /// Alerts made and not yet taken.
    out: Vec<Alert>,
}

/// The wall-clock time of `instant`, given that `now` is `wall`.
fn wall_at(instant: Instant, now: Instant, wall: SystemTime) -> SystemTime {
    wall.checked_sub(now.saturating_duration_since(instant))
        .unwrap_or(wall)
}

impl Alarms {
    pub(crate) fn new(telemetry: Arc<Telemetry>) -> Self {
        Self {
            telemetry,
            points: BTreeMap::new(),
            watches: BTreeMap::new(),
            storms: BTreeMap::new(),
            flaps: HashMap::new(),
            active: BTreeMap::new(),
            out: Vec::new(),
        }
    }

    /// Starts watching a device (configured, or added at run time): its
    /// points' alarms and its `offline_alert`. A device it knows already is
    /// left as it is.
    pub(crate) fn add_device(&mut self, device: &Arc<DeviceSpec>) {
        for point in device.points.values() {
            if self.point_mut(&device.id, &point.id).is_some() {
                continue;
            }
            if let Some(entry) = PointEntry::new(device, point) {
                self.insert_point(entry);
            }
        }
        if let Some(delay) = device.settings.offline_alert {
            self.watches.entry(device.id.clone()).or_insert(Watch {
                device: Arc::clone(device),
                delay,
                down: None,
            });
        }
    }

    fn point_mut(&mut self, device: &DeviceId, point: &PointId) -> Option<&mut PointEntry> {
        self.points.get_mut(device)?.get_mut(point)
    }

    fn insert_point(&mut self, entry: PointEntry) {
        self.points
            .entry(entry.device.id.clone())
            .or_default()
            .insert(entry.point.clone(), entry);
    }

    /// The alerts made since the last call, in order.
    pub(crate) fn take(&mut self) -> Vec<Alert> {
        std::mem::take(&mut self.out)
    }

    /// A normalized reading of `point` of `device`, at `now` (`wall`).
    pub(crate) fn reading(
        &mut self,
        device: &DeviceId,
        point: &PointId,
        value: &Value,
        quality: &Quality,
        now: Instant,
        wall: SystemTime,
    ) {
        let Some(entry) = self.point_mut(device, point) else {
            return;
        };
        if quality.is_good() {
            entry.last_good = Some(value.clone());
        }
        if let Some(t) = entry.alarm.observe(value, quality, now) {
            self.point_transition(device.clone(), point.clone(), t, now, wall);
        }
    }

    /// A device's new status.
    pub(crate) fn status(
        &mut self,
        device: &DeviceId,
        status: &DeviceStatus,
        now: Instant,
        wall: SystemTime,
    ) {
        let Some(watch) = self.watches.get_mut(device) else {
            return;
        };
        match status {
            DeviceStatus::Offline { reason } => {
                if watch.down.is_none() {
                    watch.down = Some(Down {
                        since: now,
                        reason: reason.clone(),
                        raised: None,
                    });
                }
                let connection = watch.connection().clone();
                if let Some(storm) = self.storms.get_mut(&connection) {
                    storm.back.remove(device);
                }
            }
            DeviceStatus::Online => {
                let Some(down) = watch.down.take() else {
                    return;
                };
                let connection = watch.connection().clone();
                let spec = Arc::clone(&watch.device);
                self.clear_offline(&spec, &down, false, now, wall);
                self.back_online(&connection, device, now, wall);
            }
            // Stale neither raises nor clears: the device is reachable.
            DeviceStatus::Stale => {}
        }
    }

    /// The offline alert of `device` ends, if it was raised: the device is
    /// back, or (`reloaded`) no longer has an `offline_alert`.
    fn clear_offline(
        &mut self,
        device: &Arc<DeviceSpec>,
        down: &Down,
        reloaded: bool,
        now: Instant,
        wall: SystemTime,
    ) {
        let Some(raised) = down.raised else {
            return;
        };
        let lasted = now.saturating_duration_since(down.since);
        let t = text::offline_cleared(device, lasted, reloaded);
        self.clear(
            AlarmKey::Offline(device.id.clone()),
            OFFLINE_SEVERITY,
            vec![device.id.clone()],
            raised,
            lasted,
            None,
            t,
            now,
            wall,
        );
    }

    /// `device`, a member of `connection`'s storm (if it has one), is back:
    /// the storm clears when every member is.
    fn back_online(
        &mut self,
        connection: &ConnectionId,
        device: &DeviceId,
        now: Instant,
        wall: SystemTime,
    ) {
        let Some(storm) = self.storms.get_mut(connection) else {
            return;
        };
        if storm.members.contains(device) {
            storm.back.insert(device.clone());
        }
        if storm.back.is_superset(&storm.members)
            && let Some(storm) = self.storms.remove(connection)
        {
            let lasted = now.saturating_duration_since(storm.began);
            let names = self.names(&storm.members);
            let names: Vec<&str> = names.iter().map(String::as_str).collect();
            let t = text::connection_back(connection, &names, lasted);
            let key = AlarmKey::Connection(connection.clone());
            let devices = storm.members.into_iter().collect();
            self.clear(
                key,
                OFFLINE_SEVERITY,
                devices,
                storm.raised,
                lasted,
                None,
                t,
                now,
                wall,
            );
        }
    }

    /// Display names of `devices` (ids of devices no longer watched).
    fn names(&self, devices: &BTreeSet<DeviceId>) -> Vec<String> {
        devices
            .iter()
            .map(|d| match self.watches.get(d) {
                Some(w) => w.device.display_name().to_owned(),
                None => d.to_string(),
            })
            .collect()
    }

    /// The time passing: holds end, offline delays end, flapping windows
    /// end.
    pub(crate) fn tick(&mut self, now: Instant, wall: SystemTime) {
        let mut transitions = Vec::new();
        for (device, points) in &mut self.points {
            for (point, entry) in points {
                if let Some(t) = entry.alarm.tick(now) {
                    transitions.push((device.clone(), point.clone(), t));
                }
            }
        }
        for (device, point, t) in transitions {
            self.point_transition(device, point, t, now, wall);
        }
        self.offline_delays(now, wall);
        self.flap_windows(now, wall);
    }

    /// Devices whose offline delay ended: one connection alert when their
    /// whole connection is down, else their own.
    fn offline_delays(&mut self, now: Instant, wall: SystemTime) {
        let in_storm = |storms: &BTreeMap<ConnectionId, Storm>, w: &Watch, id: &DeviceId| {
            storms
                .get(w.connection())
                .is_some_and(|s| s.members.contains(id))
        };
        let expired: Vec<DeviceId> = self
            .watches
            .iter()
            .filter(|(id, w)| {
                w.down.as_ref().is_some_and(|d| {
                    d.raised.is_none() && now.saturating_duration_since(d.since) >= w.delay
                }) && !in_storm(&self.storms, w, id)
            })
            .map(|(id, _)| id.clone())
            .collect();
        for id in expired {
            // An earlier one of this round may have made a storm of it.
            let Some(w) = self.watches.get(&id) else {
                continue;
            };
            if in_storm(&self.storms, w, &id) {
                continue;
            }
            let connection = w.connection().clone();
            let peers: Vec<&DeviceId> = self
                .watches
                .iter()
                .filter(|(_, p)| *p.connection() == connection)
                .map(|(pid, _)| pid)
                .collect();
            let all_down = peers
                .iter()
                .all(|p| self.watches.get(*p).is_some_and(|w| w.down.is_some()));
            if peers.len() >= 2 && all_down && !self.storms.contains_key(&connection) {
                let members: BTreeSet<DeviceId> = peers.into_iter().cloned().collect();
                self.raise_storm(connection, members, now, wall);
            } else {
                self.raise_offline(&id, now, wall);
            }
        }
    }

    fn raise_offline(&mut self, id: &DeviceId, now: Instant, wall: SystemTime) {
        let Some(w) = self.watches.get_mut(id) else {
            return;
        };
        let Some(down) = &mut w.down else {
            return;
        };
        down.raised = Some(now);
        let t = text::offline_raised(
            &w.device,
            now.saturating_duration_since(down.since),
            &down.reason,
        );
        let since = down.since;
        let subject = text::subject_offline(&w.device);
        self.raise(
            AlarmKey::Offline(id.clone()),
            OFFLINE_SEVERITY,
            vec![id.clone()],
            since,
            None,
            t,
            subject,
            now,
            wall,
        );
    }

    fn raise_storm(
        &mut self,
        connection: ConnectionId,
        members: BTreeSet<DeviceId>,
        now: Instant,
        wall: SystemTime,
    ) {
        let first = members
            .iter()
            .filter_map(|m| self.watches.get(m)?.down.as_ref())
            .min_by_key(|d| d.since);
        let (began, reason) = match first {
            Some(d) => (d.since, d.reason.clone()),
            None => (now, String::new()),
        };
        let names = self.names(&members);
        let names: Vec<&str> = names.iter().map(String::as_str).collect();
        let t = text::connection_down(
            &connection,
            &names,
            now.saturating_duration_since(began),
            &reason,
        );
        let subject = text::subject_connection(&connection);
        let devices = members.iter().cloned().collect();
        self.storms.insert(
            connection.clone(),
            Storm {
                members,
                back: BTreeSet::new(),
                began,
                raised: now,
            },
        );
        self.raise(
            AlarmKey::Connection(connection),
            OFFLINE_SEVERITY,
            devices,
            began,
            None,
            t,
            subject,
            now,
            wall,
        );
    }

    fn point_transition(
        &mut self,
        device: DeviceId,
        point: PointId,
        t: Transition,
        now: Instant,
        wall: SystemTime,
    ) {
        let Some(entry) = self.point_mut(&device, &point) else {
            return;
        };
        let key = entry.key();
        let severity = entry.alarm.settings().severity;
        let Some(spec) = entry.device.points.get(&entry.point) else {
            return;
        };
        match t {
            Transition::Raised {
                limit,
                value,
                since,
            } => {
                let t = text::point_raised(
                    &entry.device,
                    spec,
                    entry.alarm.settings(),
                    &limit,
                    &value,
                    now.saturating_duration_since(since),
                );
                let subject = text::subject_point(&entry.device, spec);
                entry.raised = Some((limit, since, now));
                let devices = vec![device];
                self.raise(
                    key,
                    severity,
                    devices,
                    since,
                    Some(value),
                    t,
                    subject,
                    now,
                    wall,
                );
            }
            Transition::Cleared { value, .. } => {
                let Some((limit, began, raised)) = entry.raised.take() else {
                    return;
                };
                let lasted = now.saturating_duration_since(began);
                let t = text::point_cleared(
                    &entry.device,
                    spec,
                    entry.alarm.settings(),
                    &limit,
                    &value,
                    lasted,
                );
                let devices = vec![device];
                self.clear(
                    key,
                    severity,
                    devices,
                    raised,
                    lasted,
                    Some(value),
                    t,
                    now,
                    wall,
                );
            }
        }
    }

    /// Puts a raise out, counting it for flapping.
    #[allow(clippy::too_many_arguments)]
    fn raise(
        &mut self,
        key: AlarmKey,
        severity: Severity,
        devices: Vec<DeviceId>,
        since: Instant,
        value: Option<Value>,
        text: String,
        subject: String,
        now: Instant,
        wall: SystemTime,
    ) {
        let flap = match self.flaps.get_mut(&key) {
            Some(f) if now.saturating_duration_since(f.first) < FLAP_WINDOW => {
                f.times += 1;
                f.flapping |= f.times >= FLAP_RAISES;
                f
            }
            _ => {
                self.flaps.insert(
                    key.clone(),
                    Flap {
                        first: now,
                        times: 1,
                        flapping: false,
                        severity,
                        devices: devices.clone(),
                        subject,
                    },
                );
                self.flaps.get_mut(&key).expect("just inserted")
            }
        };
        let notify = !flap.flapping;
        AlarmRaised {
            key: &key,
            severity,
            notify,
        }
        .emit(&self.telemetry);
        self.active.insert(key.clone(), severity);
        self.gauge();
        self.out.push(Alert {
            key,
            severity,
            change: Change::Raised,
            notify,
            devices,
            at: wall,
            since: wall_at(since, now, wall),
            value,
            text,
        });
    }

    /// Puts a clear out; `raised` is when it was raised, `lasted` how long
    /// the condition lasted.
    #[allow(clippy::too_many_arguments)]
    fn clear(
        &mut self,
        key: AlarmKey,
        severity: Severity,
        devices: Vec<DeviceId>,
        raised: Instant,
        lasted: Duration,
        value: Option<Value>,
        text: String,
        now: Instant,
        wall: SystemTime,
    ) {
        let notify = !self.flaps.get(&key).is_some_and(|f| f.flapping);
        AlarmCleared {
            key: &key,
            severity,
            lasted,
        }
        .emit(&self.telemetry);
        self.active.remove(&key);
        self.gauge();
        self.out.push(Alert {
            key,
            severity,
            change: Change::Cleared,
            notify,
            devices,
            at: wall,
            since: wall_at(raised, now, wall),
            value,
            text,
        });
    }

    /// Flapping windows that ended: one summary each for those that
    /// flapped; the others are forgotten.
    fn flap_windows(&mut self, now: Instant, wall: SystemTime) {
        let ended: Vec<AlarmKey> = self
            .flaps
            .iter()
            .filter(|(_, f)| now.saturating_duration_since(f.first) >= FLAP_WINDOW)
            .map(|(k, _)| k.clone())
            .collect();
        let mut ended: Vec<(AlarmKey, Flap)> = ended
            .into_iter()
            .filter_map(|k| self.flaps.remove_entry(&k))
            .filter(|(_, f)| f.flapping)
            .collect();
        ended.sort_by(|a, b| a.0.cmp(&b.0));
        for (key, f) in ended {
            let raised = self.active.contains_key(&key);
            self.out.push(Alert {
                text: text::flapping(&f.subject, f.times, raised),
                key,
                severity: f.severity,
                change: Change::Flapping {
                    times: f.times,
                    raised,
                },
                notify: true,
                devices: f.devices,
                at: wall,
                since: wall_at(f.first, now, wall),
                value: None,
            });
        }
    }

    fn gauge(&self) {
        let active = Severity::ALL.map(|s| self.active.values().filter(|v| **v == s).count());
        AlarmsActive { active }.emit(&self.telemetry);
    }

    /// A reload: points whose alarm settings are unchanged keep their
    /// state; a changed alarm that was raised ends (a Cleared alert) and
    /// the new one is evaluated against the point's newest good value
    /// (`latest`, or the one this kept); a removed one that was raised
    /// clears. Devices likewise for `offline_alert`; a device that is
    /// offline (`status`) when it gains one counts from now.
    pub(crate) fn reconfigure(
        &mut self,
        directory: &Directory,
        latest: impl Fn(&DeviceId, &PointId) -> Option<Value>,
        status: impl Fn(&DeviceId) -> Option<DeviceStatus>,
        now: Instant,
        wall: SystemTime,
    ) {
        // Points.
        let old = std::mem::take(&mut self.points);
        let mut kept_good = HashMap::new();
        for (device, point, mut entry) in old
            .into_iter()
            .flat_map(|(d, points)| points.into_iter().map(move |(p, e)| (d.clone(), p, e)))
        {
            let new_device = directory.device(device.as_str());
            let new_point = new_device.and_then(|d| Some((d, d.points.get(&point)?)));
            match new_point {
                Some((d, p)) if p.settings.alarm.as_ref() == Some(entry.alarm.settings()) => {
                    entry.device = Arc::clone(d);
                    self.insert_point(entry);
                }
                other => {
                    let why = if other.is_some_and(|(_, p)| p.settings.alarm.is_some()) {
                        Ended::Changed
                    } else {
                        Ended::Removed
                    };
                    self.end_point(&mut entry, why, now, wall);
                    if let Some(v) = entry.last_good.take() {
                        kept_good.insert((device, point), v);
                    }
                }
            }
        }
        for d in directory.devices() {
            for p in d.points.values() {
                if self.point_mut(&d.id, &p.id).is_some() {
                    continue;
                }
                let Some(mut entry) = PointEntry::new(d, p) else {
                    continue;
                };
                let key = (d.id.clone(), p.id.clone());
                entry.last_good = latest(&d.id, &p.id).or_else(|| kept_good.remove(&key));
                let transition = entry
                    .last_good
                    .clone()
                    .and_then(|v| entry.alarm.observe(&v, &Quality::Good, now));
                self.insert_point(entry);
                if let Some(t) = transition {
                    self.point_transition(key.0, key.1, t, now, wall);
                }
            }
        }
        // Offline alerts.
        let old = std::mem::take(&mut self.watches);
        // Storm members moved to another connection or no longer watched:
        // left once the others are in place (the storm's text names them).
        let mut left = Vec::new();
        for (id, mut w) in old {
            match directory.device(id.as_str()) {
                Some(d) if d.settings.offline_alert.is_some() => {
                    if d.settings.connection != *w.connection() {
                        left.push((id.clone(), w.connection().clone()));
                    }
                    w.delay = d.settings.offline_alert.unwrap_or(w.delay);
                    w.device = Arc::clone(d);
                    self.watches.insert(id, w);
                }
                _ => {
                    if let Some(down) = &w.down {
                        self.clear_offline(&w.device, down, true, now, wall);
                    }
                    left.push((id, w.connection().clone()));
                }
            }
        }
        for (id, connection) in left {
            self.leave_storm(&id, connection, now, wall);
        }
        for d in directory.devices() {
            if d.settings.offline_alert.is_none() || self.watches.contains_key(&d.id) {
                continue;
            }
            self.add_device(d);
            if let (Some(DeviceStatus::Offline { reason }), Some(w)) =
                (status(&d.id), self.watches.get_mut(&d.id))
            {
                w.down = Some(Down {
                    since: now,
                    reason,
                    raised: None,
                });
            }
        }
    }

    /// A raised point alarm that a reload changed or removed clears.
    fn end_point(&mut self, entry: &mut PointEntry, why: Ended, now: Instant, wall: SystemTime) {
        let Some((limit, began, raised)) = entry.raised.take() else {
            return;
        };
        let Some(spec) = entry.device.points.get(&entry.point) else {
            return;
        };
        let lasted = now.saturating_duration_since(began);
        let t = text::point_ended(&entry.device, spec, &limit, lasted, why);
        let devices = vec![entry.device.id.clone()];
        let severity = entry.alarm.settings().severity;
        let value = entry.last_good.clone();
        self.clear(
            entry.key(),
            severity,
            devices,
            raised,
            lasted,
            value,
            t,
            now,
            wall,
        );
    }

    /// `device` no longer belongs to `connection`'s storm (a reload moved
    /// or removed it): the storm lists the others, and clears when they are
    /// all back (or none is left).
    fn leave_storm(
        &mut self,
        device: &DeviceId,
        connection: ConnectionId,
        now: Instant,
        wall: SystemTime,
    ) {
        let Some(storm) = self.storms.get_mut(&connection) else {
            return;
        };
        if !storm.members.remove(device) {
            return;
        }
        storm.back.remove(device);
        if storm.back.is_superset(&storm.members) {
            // The rest are back (or none is left): it clears.
            self.back_online(&connection, device, now, wall);
        }
    }
}
