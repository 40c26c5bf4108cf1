// The active alarms, as the gateway's `alerts` pubsub node tells them: one
// item per alert people are told of (raised, cleared, or a flapping
// summary), ids increasing. What is raised stays until its clear comes.
// No DOM here (app.js renders), so that node's test runner can check it.

/** Most urgent first. */
const RANK = { critical: 0, warning: 1, info: 2 };

/** Alert item ids count up: compare them as numbers of any length. */
function compareIds(a, b) {
  return a.length - b.length || (a < b ? -1 : a > b ? 1 : 0);
}

export class ActiveAlarms {
  constructor() {
    /** key → the alert that raised it (the latest). */
    this.raised = new Map();
    /** key → the id of the newest item applied, so that the history
     *  fetched at login and live notifications may come in any order. */
    this.newest = new Map();
  }

  /** Applies one alert ({ id, key, severity, change, raised, … }, as
   *  xmpp.js's parseAlert gives); returns whether the list changed. */
  apply(alert) {
    if (!alert || !alert.key) return false;
    const seen = this.newest.get(alert.key);
    if (seen !== undefined && alert.id && compareIds(alert.id, seen) <= 0) return false;
    if (alert.id) this.newest.set(alert.key, alert.id);
    const stillRaised = alert.change === 'raised'
      || (alert.change === 'flapping' && alert.raised !== false);
    if (stillRaised) {
      this.raised.set(alert.key, alert);
      return true;
    }
    return this.raised.delete(alert.key);
  }

  /** The raised alarms, most urgent first, then the oldest first. */
  list() {
    return [...this.raised.values()].sort((a, b) =>
      (RANK[a.severity] ?? 3) - (RANK[b.severity] ?? 3) || (a.since ?? 0) - (b.since ?? 0));
  }
}

/** The severity as the gateway's chat messages mark it. */
export function marker(severity) {
  return { critical: '🔴 CRITICAL', warning: '🟠 WARNING', info: '🔵 INFO' }[severity] || severity;
}
