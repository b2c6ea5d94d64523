// Output URL checks: the structural half of exfiltration defence (the `exfiltration` pack holds the
// regex half). A model tricked by an injected document can smuggle data out through a URL the client
// renders: a markdown image fetched automatically, a link, an HTML tag.
//
// URLs are taken from the ORIGINAL text (not the normalized one): confusable folding would turn a
// Cyrillic lookalike host into the Latin one and hide exactly the IDN trick we look for. The WHATWG URL
// parser then gives the host the way a browser resolves it (userinfo stripped, IDN → punycode).
//
// Rule ids (block unless noted; category `exfiltration` when the URL carries data in its query or
// fragment, else `url`):
//   output.url-not-allowed   host not in output.urls.allowDomains (only when the list is non-empty)
//   output.markdown-image    markdown/HTML image from a host not allow-listed (blockMarkdownImages)
//   output.url-javascript    javascript:/vbscript: URL in a link, image or HTML attribute
//   output.url-data          data: URL in a link or HTML attribute (data:image/* images are fine)
//   output.url-userinfo      `https://trusted.com@evil.com`: the part before @ is userinfo, not the host
//   output.url-idn           punycode/IDN host (homograph risk) that is not explicitly allow-listed
import RE2 from 're2';
import type { UrlPolicy } from '../compile.js';

export interface UrlFinding {
  rule: string;
  category: 'url' | 'exfiltration';
  start: number;
  end: number;
  message: string;
}

type Context = 'image' | 'link' | 'html' | 'bare';

// Extraction patterns (RE2: linear whatever the model writes). Group 1 = the URL.
const MD_IMAGE = new RE2(String.raw`!\[[^\]\n]{0,1000}\]\(\s*<?([^\s)>]+)`, 'gu');
const MD_LINK = new RE2(String.raw`(?:^|[^!])\[[^\]\n]{0,1000}\]\(\s*<?([^\s)>]+)`, 'gu');
const MD_REF = new RE2(String.raw`(?m)^[ \t]{0,3}\[[^\]\n]{1,200}\]:[ \t]*<?([^\s>]+)`, 'gu');
const HTML_ATTR = new RE2(
  String.raw`(?i)<(img|script|iframe|a|link|source|video|audio|embed|object|form|image)\b[^>]*?\b(?:src|href|srcset|data|poster|action|xlink:href)\s*=\s*["']?([^"'\s>]+)`,
  'gu',
);
const BARE = new RE2(String.raw`(?i)\b(?:https?|ftp|wss?)://[^\s<>"'\x60\]\[(){}|\\^]+`, 'gu');

function hostAllowed(host: string, p: UrlPolicy): boolean {
  if (p.hosts.has(host)) return true;
  for (const s of p.suffixes) if (host.endsWith(s) && host.length > s.length) return true;
  return false;
}

function carriesData(u: URL): boolean {
  // a query or fragment with a value of some length is how data rides out in an image fetch
  return /[^=&?#]{8,}/.test(u.search) || u.hash.length > 8;
}

interface Candidate {
  url: string;
  start: number;
  end: number;
  context: Context;
}

/** Every URL finding in `text`, offsets into `text`. */
export function scanUrls(text: string, p: UrlPolicy): UrlFinding[] {
  const out: UrlFinding[] = [];
  // cheap gate: no scheme-ish text, no markdown link, no tag → nothing to do
  if (!text.includes(':') && !text.includes('](') && !text.includes('<')) return out;
  const cands: Candidate[] = [];
  const seen = new Set<number>();
  const take = (re: RE2, group: number, context: Context | ((m: RegExpExecArray) => Context)) => {
    re.lastIndex = 0;
    let m: RegExpExecArray | null;
    while ((m = re.exec(text)) !== null) {
      const url = m[group];
      if (url === undefined) continue;
      const start = m.index + m[0].length - url.length;
      if (seen.has(start)) continue;
      seen.add(start);
      cands.push({
        url,
        start,
        end: start + url.length,
        context: typeof context === 'function' ? context(m) : context,
      });
    }
  };
  take(MD_IMAGE, 1, 'image');
  take(HTML_ATTR, 2, (m) => (/^(img|image|video|audio|source)$/i.test(m[1]) ? 'image' : 'html'));
  take(MD_LINK, 1, 'link');
  take(MD_REF, 1, 'link');
  take(BARE, 0, 'bare');
  for (const c of cands) check(c, p, out);
  out.sort((a, b) => a.start - b.start);
  return out;
}

function check(c: Candidate, p: UrlPolicy, out: UrlFinding[]): void {
  const push = (rule: string, category: UrlFinding['category'], message: string) =>
    out.push({ rule, category, start: c.start, end: c.end, message });
  let lead = 0;
  while (lead < c.url.length && c.url.charCodeAt(lead) <= 0x20) lead++; // browsers skip leading controls
  // sentence punctuation after a URL is not part of it (a loop: a regex would backtrack on long runs)
  let end = c.url.length;
  while (end > lead && '.,;:!?'.includes(c.url[end - 1])) end--;
  const raw = c.url.slice(lead, end);
  const scheme = /^([a-z][a-z0-9+.-]*):/i.exec(raw)?.[1]?.toLowerCase();
  if (scheme === 'javascript' || scheme === 'vbscript') {
    if (c.context !== 'bare') push('output.url-javascript', 'url', 'script URL in output');
    return;
  }
  if (scheme === 'data') {
    if (c.context === 'image' && /^data:image\//i.test(raw)) return;
    if (c.context !== 'bare') push('output.url-data', 'url', 'data: URL in output');
    return;
  }
  let u: URL;
  try {
    // protocol-relative `//evil.com/x` is a remote fetch too
    u = new URL(raw.startsWith('//') ? `https:${raw}` : raw);
  } catch {
    return; // relative link or not a URL: nothing leaves the page
  }
  if (
    u.protocol !== 'http:' &&
    u.protocol !== 'https:' &&
    u.protocol !== 'ftp:' &&
    u.protocol !== 'ws:' &&
    u.protocol !== 'wss:'
  )
    return;
  const host = u.hostname.toLowerCase().replace(/\.$/, '');
  const allowed = hostAllowed(host, p);
  const category = carriesData(u) ? 'exfiltration' : 'url';
  if (u.username !== '' || u.password !== '')
    push('output.url-userinfo', 'url', 'URL with userinfo (host spoofing)');
  if (!allowed && host.split('.').some((l) => l.startsWith('xn--')))
    push('output.url-idn', 'url', 'internationalized (punycode) host');
  if (allowed) return;
  if (c.context === 'image' && p.blockMarkdownImages) {
    push('output.markdown-image', category, 'image from a host not allow-listed');
  } else if (p.restrictHosts) {
    push('output.url-not-allowed', category, 'URL host not allow-listed');
  }
}
