//! A reload reaching the component: the new directory and access lists,
//! applied at once, on the same link.
//!
//! An unchanged device keeps its state, presence and items: nothing is
//! sent for it. A removed one sends its presence subscribers a last
//! unavailable presence ("removed from the configuration"), publishes what
//! was waiting for its item, and leaves disco and pubsub; its
//! subscriptions and history stay in the store, so that adding it back
//! brings both back. An added one gets its node (as it was when a reload
//! removed it, else as the store left it) and speaks when its adapter
//! reports. A changed one keeps its state, minus the points it lost, and
//! shows its new name, points and history bounds. Subscribers the new
//! access lists refuse are paused: kept, sent nothing, resumed when
//! allowed again.

use std::sync::Arc;

use fieldbridge_core::{DeviceId, Directory};
use minidom::Element;

use super::{DeviceState, Gateway, presence};
use crate::access::Access;

/// What a reload changed in the component: the file's devices, and those
/// made at run time on a connection the file no longer has.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Reconfigured {
    /// Devices taken on.
    pub added: Vec<DeviceId>,
    /// Devices let go of.
    pub removed: Vec<DeviceId>,
    /// Devices whose spec changed.
    pub changed: Vec<DeviceId>,
}

impl Gateway {
    /// Applies a reload: `directory` replaces the devices, `access` the
    /// access lists. Returns the presences to send (removed devices' last
    /// word) and what changed.
    pub fn reconfigure(
        &mut self,
        directory: Arc<Directory>,
        access: Access,
    ) -> (Vec<Element>, Reconfigured) {
        let old = std::mem::replace(&mut self.directory, directory);
        self.access = access;
        super::pause_outsiders(&mut self.subscribers, &self.access);
        let mut out = Vec::new();
        let mut what = Reconfigured::default();
        let mut gone: Vec<DeviceId> = self
            .devices
            .keys()
            .filter(|id| self.directory.device(id.as_str()).is_none())
            .cloned()
            .collect();
        gone.sort();
        for id in gone {
            // Readings waiting for their item still make it to the history.
            self.publish(&id);
            let state = self.devices.remove(&id);
            self.presence.remove(&id);
            if let (Some(node), Some(mut state)) = (self.nodes.remove(&id), state) {
                // Until its adapter says otherwise, if it comes back.
                state.status = None;
                self.removed.insert(id.clone(), (node, state));
            }
            out.extend(presence::removed(&self.me, &id, &self.subscribers));
            tracing::info!(device = %id, "device removed from the configuration");
            what.removed.push(id);
        }
        let specs: Vec<_> = self.directory.configured().values().cloned().collect();
        for spec in specs {
            let id = &spec.id;
            let Some(state) = self.devices.get_mut(id) else {
                let state = match self.removed.remove(id) {
                    Some((node, mut state)) => {
                        state
                            .latest
                            .retain(|point, _| spec.points.contains_key(point));
                        self.nodes.restore(&spec, node);
                        state
                    }
                    None => match self.nodes.resume(&spec) {
                        Ok(state) => state,
                        Err(e) => {
                            tracing::error!(device = %id, error = %e, "cannot read the history");
                            self.nodes.add_empty(&spec);
                            DeviceState::default()
                        }
                    },
                };
                self.devices.insert(id.clone(), state);
                self.presence.add(&spec);
                what.added.push(id.clone());
                continue;
            };
            if old.device(id.as_str()) == Some(&spec) {
                continue;
            }
            state
                .latest
                .retain(|point, _| spec.points.contains_key(point));
            self.presence.add(&spec);
            self.nodes.set_limits(&spec);
            what.changed.push(id.clone());
        }
        (out, what)
    }
}
