import { describe, expect, it } from 'vitest';
import { compiled } from './test-policy.js';
import { checkToolCall } from '../scan.js';

const p = compiled({
  tools: {
    default: 'deny',
    allow: [
      {
        name: 'get_weather',
        args: {
          city: { pattern: String.raw`^[\p{L} .-]{1,64}$`, required: true },
          days: { minimum: 1, maximum: 7 },
        },
      },
      { name: 'run_sql', args: { query: { deny: [String.raw`(?i)\b(drop|truncate|delete)\b`] } } },
      { name: 'set_mode', args: { mode: { enum: ['fast', 'safe', 3] } } },
      { name: 'ping' },
    ] as never,
    deny: ['shell_exec', 'ping_denied'],
  },
});
const call = (name: string, args: unknown) =>
  checkToolCall(p, { path: 'tool_calls[0]', name, arguments: args as never }, 'output');

describe('tool policy', () => {
  it('allows listed tools with good arguments, as JSON text or object', () => {
    expect(call('get_weather', '{"city":"São Paulo","days":3}')).toEqual([]);
    expect(call('get_weather', { city: 'Zürich' })).toEqual([]);
    expect(call('ping', '')).toEqual([]);
    expect(call('ping', undefined)).toEqual([]);
    expect(call('set_mode', { mode: 3 })).toEqual([]);
  });

  it('blocks unlisted (default deny) and denied tools, naming the tool', () => {
    expect(call('shell_exec', '{}')).toEqual([
      expect.objectContaining({
        rule: 'tools.denied',
        category: 'tools',
        action: 'block',
        tool: 'shell_exec',
        path: 'tool_calls[0]',
        start: -1,
      }),
    ]);
    expect(call('unknown_tool', '{}')[0].rule).toBe('tools.denied');
    const open = compiled({ tools: { default: 'allow', allow: [], deny: ['shell_exec'] } });
    expect(checkToolCall(open, { path: 'x', name: 'anything', arguments: '{}' }, 'output')).toEqual([]);
    expect(checkToolCall(open, { path: 'x', name: 'shell_exec', arguments: '{}' }, 'output')[0].rule).toBe(
      'tools.denied',
    );
  });

  it('malformed argument JSON is a finding', () => {
    for (const bad of ['{"city": "Par', '[1,2]', '42', 'null']) {
      expect(call('get_weather', bad)).toEqual([
        expect.objectContaining({ rule: 'tools.malformed-arguments', action: 'block' }),
      ]);
    }
  });

  it('argument constraints name the tool and the argument, never the value', () => {
    const cases: [string, unknown, string][] = [
      ['get_weather', { days: 2 }, 'required argument missing'],
      ['get_weather', { city: 'Paris; rm -rf /' }, 'does not match the allowed pattern'],
      ['get_weather', { city: 'Paris', days: 9 }, 'above maximum'],
      ['get_weather', { city: 'Paris', days: 0 }, 'below minimum'],
      ['get_weather', { city: 'Paris', days: 'soon' }, 'not a number'],
      ['run_sql', { query: 'select 1; DROP TABLE users' }, 'matches a denied pattern'],
      ['set_mode', { mode: 'turbo' }, 'not one of the allowed values'],
    ];
    for (const [tool, args, problem] of cases) {
      const f = call(tool, JSON.stringify(args));
      expect(f).toHaveLength(1);
      expect(f[0]).toMatchObject({ rule: 'tools.argument', tool, action: 'block' });
      expect(f[0].message).toContain(problem);
      for (const v of Object.values(args as object))
        if (typeof v === 'string' && v.length > 3) expect(f[0].message).not.toContain(v);
    }
  });

  it('monitor mode turns tool blocks into monitor', () => {
    const m = compiled({ mode: 'monitor', tools: { default: 'deny', allow: [], deny: [] } });
    expect(checkToolCall(m, { path: 'x', name: 'x', arguments: '{}' }, 'output')[0].action).toBe('monitor');
  });
});
