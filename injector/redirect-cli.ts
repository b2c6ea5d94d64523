// `inferguard init-redirect --port MODEL=LISTEN…`: what the inferguard-init container runs. Exit 0
// when the rules are in place (idempotent), 1 when they could not be installed (the pod then never
// starts: fail closed), 2 on usage errors.
import { parseArgs } from 'node:util';
import { applyRedirects, parseRedirects, restoreScript, JUMP, RedirectError } from './redirect.js';

const HELP = `usage: inferguard init-redirect --port MODEL=LISTEN [--port MODEL=LISTEN…] [flags]

Installs iptables and ip6tables nat rules in the current network namespace so inbound TCP to each
MODEL port is redirected to the sidecar's LISTEN port. Needs NET_ADMIN and NET_RAW. Idempotent.

  --port MODEL=LISTEN   a model port and its sidecar listener, e.g. 8000=15001 (repeatable)
  --iptables BIN        iptables binary (default iptables; e.g. iptables-legacy) [$INFERGUARD_IPTABLES]
  --ip6tables BIN       ip6tables binary (default ip6tables) [$INFERGUARD_IP6TABLES]
  --dry-run             print what would be installed and change nothing
`;

export async function run(args: string[]): Promise<number> {
  let values;
  try {
    values = parseArgs({
      args,
      options: {
        port: { type: 'string', multiple: true, default: [] },
        iptables: { type: 'string' },
        ip6tables: { type: 'string' },
        'dry-run': { type: 'boolean', default: false },
        help: { type: 'boolean', short: 'h', default: false },
      },
    }).values;
  } catch (err) {
    process.stderr.write(`inferguard init-redirect: ${(err as Error).message}\n\n${HELP}`);
    return 2;
  }
  if (values.help) {
    process.stdout.write(HELP);
    return 0;
  }
  let redirects;
  try {
    redirects = parseRedirects(values.port ?? []);
  } catch (err) {
    process.stderr.write(`inferguard init-redirect: ${(err as Error).message}\n`);
    return 2;
  }
  const iptables = values.iptables ?? (process.env.INFERGUARD_IPTABLES || 'iptables');
  const ip6tables = values.ip6tables ?? (process.env.INFERGUARD_IP6TABLES || 'ip6tables');
  if (values['dry-run']) {
    for (const bin of [iptables, ip6tables]) {
      process.stdout.write(`# ${bin}-restore --noflush\n${restoreScript(redirects)}`);
      process.stdout.write(
        `# ${bin} -C PREROUTING ${JUMP.join(' ')} || ${bin} -I PREROUTING 1 ${JUMP.join(' ')}\n`,
      );
    }
    return 0;
  }
  try {
    const report = await applyRedirects(redirects, {
      iptables,
      ip6tables,
      log: (line) => process.stderr.write(`inferguard init-redirect: ${line}\n`),
    });
    process.stdout.write(report.rules.ipv4);
    if (report.rules.ipv6) process.stdout.write(report.rules.ipv6);
    return 0;
  } catch (err) {
    if (!(err instanceof RedirectError)) throw err;
    process.stderr.write(`inferguard init-redirect: ${err.message}\n`);
    return 1;
  }
}
