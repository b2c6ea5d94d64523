// Post-match validators: a rule that names one only fires when the matched text passes it.
//
// The scanner calls a validator with the rule's match: capture group 1 when the pattern has one, else
// the whole match. Validators are pure, total (never throw) and linear in the match length; they see
// secrets and personal data, so they must never log or keep what they are given.
import type { ValidatorName } from '../types.js';

export type Validator = (match: string, rule: { minEntropy?: number }) => boolean;

/** Default Shannon-entropy threshold (bits per character) when a rule names `entropy` without one. */
export const DEFAULT_MIN_ENTROPY = 3.5;

/**
 * Credit-card numbers: 13–19 digits (spaces and dashes ignored) whose Luhn checksum is valid. A run of one
 * repeated digit (`0000 0000 0000 0000`) passes Luhn but is a placeholder, not a card.
 */
export function luhn(match: string): boolean {
  const digits = match.replace(/[\s-]/g, '');
  if (!/^\d{13,19}$/.test(digits)) return false;
  if (/^(\d)\1+$/.test(digits)) return false;
  let sum = 0;
  for (let i = 0; i < digits.length; i++) {
    let d = digits.charCodeAt(digits.length - 1 - i) - 48;
    if (i % 2 === 1) {
      d *= 2;
      if (d > 9) d -= 9;
    }
    sum += d;
  }
  return sum % 10 === 0;
}

// IBAN lengths per country (ISO 13616 registry, SWIFT release 2024). A country missing here is rejected.
const IBAN_LENGTHS: Record<string, number> = {
  AD: 24, AE: 23, AL: 28, AT: 20, AZ: 28, BA: 20, BE: 16, BG: 22, BH: 22, BI: 27, BR: 29, BY: 28, CH: 21,
  CR: 22, CY: 28, CZ: 24, DE: 22, DJ: 27, DK: 18, DO: 28, EE: 20, EG: 29, ES: 24, FI: 18, FK: 18, FO: 18,
  FR: 27, GB: 22, GE: 22, GI: 23, GL: 18, GR: 27, GT: 28, HR: 21, HU: 28, IE: 22, IL: 23, IQ: 23, IS: 26,
  IT: 27, JO: 30, KW: 30, KZ: 20, LB: 28, LC: 32, LI: 21, LT: 20, LU: 20, LV: 21, LY: 25, MC: 27, MD: 24,
  ME: 22, MK: 19, MN: 20, MR: 27, MT: 31, MU: 30, NI: 28, NL: 18, NO: 15, OM: 23, PK: 24, PL: 28, PS: 29,
  PT: 25, QA: 29, RO: 24, RS: 22, RU: 33, SA: 24, SC: 31, SD: 18, SE: 24, SI: 19, SK: 24, SM: 27, SO: 23,
  ST: 25, SV: 28, TL: 23, TN: 24, TR: 26, UA: 29, VA: 22, VG: 24, XK: 20, YE: 30,
}; // prettier-ignore

/** IBAN: known country, that country's length, and ISO 7064 mod-97 check digits (remainder 1). */
export function iban(match: string): boolean {
  const s = match.replace(/[\s-]/g, '').toUpperCase();
  if (!/^[A-Z]{2}\d{2}[A-Z0-9]+$/.test(s)) return false;
  const len = IBAN_LENGTHS[s.slice(0, 2)];
  if (len === undefined || s.length !== len) return false;
  const rearranged = s.slice(4) + s.slice(0, 4);
  // Digit by digit modulo 97 keeps the running value small (letters expand to two digits, A=10 … Z=35).
  let rem = 0;
  for (const ch of rearranged) {
    const code = ch.charCodeAt(0);
    if (code >= 65) {
      const v = code - 55;
      rem = (rem * 100 + v) % 97;
    } else {
      rem = (rem * 10 + (code - 48)) % 97;
    }
  }
  return rem === 1;
}

/**
 * US Social Security numbers as the SSA issues them: area 001–899 except 666, group 01–99, serial
 * 0001–9999. Also rejects numbers the SSA has publicly voided after they were printed as examples
 * (078-05-1120 from the Woolworth wallet card, 219-09-9999 from an SSA leaflet).
 */
export function ssn(match: string): boolean {
  const m = /^(\d{3})[ -]?(\d{2})[ -]?(\d{4})$/.exec(match.trim());
  if (!m) return false;
  const [, area, group, serial] = m;
  if (area === '000' || area === '666' || area[0] === '9') return false;
  if (group === '00' || serial === '0000') return false;
  const flat = area + group + serial;
  if (flat === '078051120' || flat === '219099999') return false;
  return true;
}

// Values that look like assignments but are placeholders. Lower-cased substrings or whole values.
const PLACEHOLDER_WORDS = [
  'example',
  'changeme',
  'change_me',
  'change-me',
  'placeholder',
  'your_',
  'your-',
  'yourpassword',
  'yourkey',
  'yoursecret',
  'redacted',
  'dummy',
  'sample',
  'xxxx',
  '****',
  '....',
  'todo',
  'replace',
  'insert',
  'notreal',
  'not_real',
  'fake',
  'secret123',
  'password123',
  'test1234',
];

/**
 * The value part of a `key = value` / `"key": "value"` match: after the last `=`, `:` or `=>` outside
 * the value, without surrounding quotes. When the scanner already passes capture group 1 (the value),
 * this is the identity.
 */
export function valuePart(match: string): string {
  let s = match.trim();
  const m = /^["']?[\w.$@-]*["']?\s*(?::=|=>|==|[=:])\s*(.*)$/s.exec(s);
  if (m && m[1] !== undefined && m[1].length > 0) s = m[1].trim();
  s = s.replace(/^["'`]+|["'`,;]+$/g, '');
  return s;
}

/** True for values that are obviously not real secrets: templates, env references, masks, examples. */
export function isPlaceholder(value: string): boolean {
  const v = value.toLowerCase();
  if (v.length === 0) return true;
  // templating and environment references: ${VAR}, {{ var }}, <your-key>, %(name)s, $VAR, process.env.X
  if (/^\$\{.*\}$|^\{\{.*\}\}$|^<[^>]*>$|^%\(?\w*\)?s$|^\$[a-z_][\w]*$/i.test(value)) return true;
  if (/^(process\.env|os\.environ|env\(|getenv|secrets\.|vault:)/i.test(value)) return true;
  // code references rather than literals: settings.SECRET_KEY, jwt.encode, self.token
  if (/^[A-Za-z_$][\w$]*(?:\.[A-Za-z_$][\w$]*)+$/.test(value)) return true;
  // masks and runs of one character: ********, xxxxxxxx, 00000000
  if (/^(.)\1{3,}$/.test(v)) return true;
  for (const w of PLACEHOLDER_WORDS) if (v.includes(w)) return true;
  return false;
}

/** Shannon entropy of a string in bits per character (over UTF-16 code units). */
export function shannonEntropy(s: string): number {
  if (s.length === 0) return 0;
  const counts = new Map<number, number>();
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    counts.set(c, (counts.get(c) ?? 0) + 1);
  }
  let h = 0;
  for (const n of counts.values()) {
    const p = n / s.length;
    h -= p * Math.log2(p);
  }
  return h;
}

/**
 * Secret-looking values: not a placeholder, and Shannon entropy of the value part ≥ `minEntropy`
 * (default {@link DEFAULT_MIN_ENTROPY}) bits per character. Ordinary words and repeated characters stay
 * well below 3.5; random base64/hex of 20+ characters sits near 4–6.
 */
export function entropy(match: string, rule: { minEntropy?: number }): boolean {
  const value = valuePart(match);
  if (isPlaceholder(value)) return false;
  return shannonEntropy(value) >= (rule.minEntropy ?? DEFAULT_MIN_ENTROPY);
}

/**
 * IP addresses that can point at a person: a well-formed IPv4 dotted quad (octets 0–255, no leading
 * zeros) or IPv6 address, excluding the ones that identify no one — unspecified, broadcast, loopback,
 * private (RFC 1918, IPv6 unique-local) and link-local ranges, which appear in every router manual.
 */
export function ip(match: string): boolean {
  const s = match.trim();
  if (s.includes('.') && !s.includes(':')) return ipv4Public(s);
  if (s.includes(':')) {
    if (!ipv6(s)) return false;
    const first = s.toLowerCase().split(':')[0];
    // ::1 loopback (and other addresses starting with ::), fe80::/10 link-local, fc00::/7 unique-local
    if (first === '') return !/^::1$/.test(s) && !/^::ffff:/i.test(s);
    if (/^fe[89ab]/.test(first) || /^f[cd]/.test(first)) return false;
    return true;
  }
  return false;
}

function ipv4(s: string): boolean {
  const parts = s.split('.');
  if (parts.length !== 4) return false;
  for (const p of parts) {
    if (!/^\d{1,3}$/.test(p)) return false;
    if (p.length > 1 && p[0] === '0') return false;
    if (Number(p) > 255) return false;
  }
  return s !== '0.0.0.0' && s !== '255.255.255.255';
}

function ipv4Public(s: string): boolean {
  if (!ipv4(s)) return false;
  const [a, b] = s.split('.').map(Number);
  if (a === 0 || a === 10 || a === 127) return false;
  if (a === 172 && b >= 16 && b <= 31) return false;
  if (a === 192 && b === 168) return false;
  if (a === 169 && b === 254) return false;
  return true;
}

function ipv6(s: string): boolean {
  let addr = s;
  // an embedded IPv4 tail (::ffff:192.0.2.1) counts as two groups
  let tailGroups = 0;
  const lastColon = addr.lastIndexOf(':');
  const tail = addr.slice(lastColon + 1);
  if (tail.includes('.')) {
    if (!ipv4(tail) && tail !== '0.0.0.0') return false;
    addr = addr.slice(0, lastColon + 1) + '0';
    tailGroups = 1;
  }
  const halves = addr.split('::');
  if (halves.length > 2) return false;
  const groups = (h: string): string[] | null => {
    if (h === '') return [];
    const g = h.split(':');
    return g.every((x) => /^[0-9a-f]{1,4}$/i.test(x)) ? g : null;
  };
  const left = groups(halves[0]);
  const right = halves.length === 2 ? groups(halves[1]) : [];
  if (!left || !right) return false;
  const n = left.length + right.length + tailGroups;
  if (halves.length === 1) return n === 8;
  if (n > 7) return false;
  // `::` alone is the unspecified address
  return n > 0;
}

export const VALIDATORS: Record<ValidatorName, Validator> = {
  luhn: (m) => luhn(m),
  iban: (m) => iban(m),
  ssn: (m) => ssn(m),
  entropy,
  ip: (m) => ip(m),
};
