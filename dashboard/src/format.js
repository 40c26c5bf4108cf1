// Values as people read them, the way the gateway's chat shows them
// (fieldbridge-core's display.rs): a point's `decimals` when it sets them,
// otherwise 4 significant digits, never exponent notation, never fewer than
// all integer digits.

const SIGNIFICANT_DIGITS = 4;
const MAX_DECIMALS = 9;

function defaultPlaces(x) {
  if (x === 0) return 0;
  const magnitude = Math.floor(Math.log10(Math.abs(x)));
  return Math.min(Math.max(SIGNIFICANT_DIGITS - 1 - magnitude, 0), MAX_DECIMALS);
}

/** A float for people. */
export function number(x, decimals) {
  if (!Number.isFinite(x)) return String(x);
  let places;
  if (decimals !== undefined && decimals !== null) {
    places = Math.min(decimals, MAX_DECIMALS);
  } else {
    places = defaultPlaces(x);
    // 9.99996 rounds to 10.000: one integer digit more, one place less.
    places = Math.min(defaultPlaces(Number(x.toFixed(places))), places);
  }
  const text = x.toFixed(places);
  return /^-[0.]+$/.test(text) ? text.slice(1) : text;
}

/** A reading with its unit: `62.80 °C`, `on`, `42 W`. */
export function reading(r, point) {
  let shown;
  if (r.kind === 'boolean') shown = r.value ? 'on' : 'off';
  else if (r.kind === 'numeric') {
    // Integer points come as integers; floats are rounded for people.
    shown = point && point.type === 'int' ? r.text : number(r.value, point && point.decimals);
  } else shown = r.text;
  const unit = r.unit || (point && point.unit);
  return unit ? `${shown} ${unit}` : shown;
}

/** A time of day with the date when it is not today, in the browser's zone. */
export function when(ms) {
  if (ms === null || ms === undefined) return 'never';
  const d = new Date(ms);
  const now = new Date();
  const time = d.toLocaleTimeString([], { hour: '2-digit', minute: '2-digit', second: '2-digit' });
  return d.toDateString() === now.toDateString() ? time : `${d.toLocaleDateString()} ${time}`;
}

/** "12 s ago", "3 min ago", "2 h ago". */
export function ago(ms, now = Date.now()) {
  if (ms === null || ms === undefined) return '';
  const s = Math.max(0, Math.round((now - ms) / 1000));
  if (s < 60) return `${s} s ago`;
  if (s < 3600) return `${Math.floor(s / 60)} min ago`;
  if (s < 86400) return `${Math.floor(s / 3600)} h ago`;
  return `${Math.floor(s / 86400)} d ago`;
}
