// The pure half of init-redirect. The real rules are exercised in e2e/redirect.test.ts (root, netns);
// here iptables is replaced by a recorder only to pin the command sequence and the IPv6 decision,
// which the unprivileged unit run cannot reach otherwise.
import { describe, expect, it } from 'vitest';
import { runCli } from '../testing/cli.js';
import { applyRedirects, ipv6Active, parseRedirects, restoreScript, type Runner } from './redirect.js';

describe('parseRedirects', () => {
  it('reads MODEL=LISTEN pairs', () => {
    expect(parseRedirects(['8000=15001', ' 8001=15002 '])).toEqual([
      { modelPort: 8000, listenPort: 15001 },
      { modelPort: 8001, listenPort: 15002 },
    ]);
  });
  it('rejects what would loop or clash', () => {
    expect(() => parseRedirects([])).toThrow(/at least one --port/);
    expect(() => parseRedirects(['8000'])).toThrow(/expected MODEL=LISTEN/);
    expect(() => parseRedirects(['0=15001'])).toThrow(/1-65535/);
    expect(() => parseRedirects(['8000=8000'])).toThrow(/must differ/);
    expect(() => parseRedirects(['8000=15001', '8000=15002'])).toThrow(/given twice/);
    expect(() => parseRedirects(['8000=15001', '15001=15002'])).toThrow(/both a model port and a listener/);
  });
});

describe('restoreScript', () => {
  it('declares the chain (created or flushed by --noflush) and adds one REDIRECT per port', () => {
    expect(restoreScript(parseRedirects(['8000=15001', '8001=15002']))).toBe(
      [
        '*nat',
        ':INFERGUARD_INBOUND - [0:0]',
        '-A INFERGUARD_INBOUND -p tcp -m tcp --dport 8000 -j REDIRECT --to-ports 15001',
        '-A INFERGUARD_INBOUND -p tcp -m tcp --dport 8001 -j REDIRECT --to-ports 15002',
        'COMMIT',
        '',
      ].join('\n'),
    );
  });
});

describe('ipv6Active', () => {
  it('counts addresses outside lo only', () => {
    expect(ipv6Active(undefined)).toBe(false);
    expect(ipv6Active('00000000000000000000000000000001 01 80 10 80       lo\n')).toBe(false);
    expect(ipv6Active('fe80000000000000380181fffee1d54b 02 40 20 c0   eth0\n')).toBe(true);
  });
});

describe('applyRedirects', () => {
  function recorder(failing: RegExp | undefined): { run: Runner; calls: string[] } {
    const calls: string[] = [];
    const run: Runner = async (bin, args) => {
      calls.push(`${bin} ${args.join(' ')}`);
      if (failing?.test(bin)) return { code: -1, stdout: '', stderr: '', spawnError: `spawn ${bin} ENOENT` };
      // -C fails: the jump is not there yet
      if (args.includes('-C')) return { code: 1, stdout: '', stderr: 'Bad rule' };
      return { code: 0, stdout: '', stderr: '' };
    };
    return { run, calls };
  }
  const redirects = parseRedirects(['8000=15001']);

  it('restores the chain, then checks before inserting the PREROUTING jump, for both families', async () => {
    const { run, calls } = recorder(undefined);
    const report = await applyRedirects(redirects, { run, ifInet6: '' });
    expect(report.ipv6).toBe('applied');
    expect(calls).toEqual([
      'iptables-restore --noflush --wait=10',
      'iptables -w 10 -C PREROUTING -t nat -p tcp -j INFERGUARD_INBOUND',
      'iptables -w 10 -I PREROUTING 1 -t nat -p tcp -j INFERGUARD_INBOUND',
      'iptables -w 10 -t nat -S INFERGUARD_INBOUND',
      'ip6tables-restore --noflush --wait=10',
      'ip6tables -w 10 -C PREROUTING -t nat -p tcp -j INFERGUARD_INBOUND',
      'ip6tables -w 10 -I PREROUTING 1 -t nat -p tcp -j INFERGUARD_INBOUND',
      'ip6tables -w 10 -t nat -S INFERGUARD_INBOUND',
    ]);
  });

  it('ip6tables missing: fatal with IPv6 up, reported and skipped without it', async () => {
    await expect(
      applyRedirects(redirects, {
        run: recorder(/ip6tables/).run,
        ifInet6: 'fe80000000000000380181fffee1d54b 02 40 20 c0 eth0\n',
      }),
    ).rejects.toThrow(/IPv6 is enabled in this pod/);
    const lines: string[] = [];
    const report = await applyRedirects(redirects, {
      run: recorder(/ip6tables/).run,
      ifInet6: '',
      log: (l) => lines.push(l),
    });
    expect(report.ipv6).toBe('skipped');
    expect(lines.at(-1)).toMatch(
      /^ipv6: skipped, IPv6 is not enabled in this pod \(ip6tables-restore failed: spawn ip6tables-restore ENOENT\)/,
    );
  });

  it('iptables missing is always fatal', async () => {
    await expect(applyRedirects(redirects, { run: recorder(/^iptables/).run, ifInet6: '' })).rejects.toThrow(
      /iptables-restore failed: spawn iptables-restore ENOENT/,
    );
  });
});

describe('inferguard init-redirect', () => {
  it('--dry-run prints the rules for both families and changes nothing', async () => {
    const r = await runCli(['init-redirect', '--port', '8000=15001', '--dry-run']);
    expect(r.code).toBe(0);
    expect(r.stdout).toContain('# iptables-restore --noflush\n*nat\n:INFERGUARD_INBOUND - [0:0]\n');
    expect(r.stdout).toContain('# ip6tables-restore --noflush\n');
  });
  it('usage errors exit 2', async () => {
    const r = await runCli(['init-redirect', '--port', '8000']);
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(/expected MODEL=LISTEN/);
  });
});
