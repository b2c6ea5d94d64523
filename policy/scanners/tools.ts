// Tool policy: which tools a model may be offered and may call, and what their arguments may hold.
//
// Findings (never carrying argument values: they may be secrets):
//   tools.removed                 a tool definition in a request that the policy does not allow; the adapter
//                                 strips it (RequestVerdict.removeTools). Action `allow`: nothing harmful
//                                 reached the model, so the request goes on.
//   tools.denied                  a call (model output, or assistant history in a request) to a tool that is
//                                 denied or, with `default: deny`, not listed. Block.
//   tools.malformed-arguments     arguments that are not a JSON object. Block.
//   tools.argument                an argument breaks its constraint (missing required, pattern, deny pattern,
//                                 enum, minimum/maximum). Block; `message` names the argument and the check.
// Argument `pattern`s apply as written (search semantics, like every rule): anchor with `^…$` to demand a
// full match, as the SPEC example does.
import type { Direction, Finding, Mode, ToolCall } from '../types.js';
import type { CompiledArg, CompiledTools } from '../compile.js';

export function toolAllowed(tools: CompiledTools, name: string): boolean {
  if (tools.deny.has(name)) return false;
  if (tools.allow.has(name)) return true;
  return tools.default === 'allow';
}

function effective(action: 'block' | 'allow', mode: Mode): Finding['action'] {
  return mode === 'monitor' && action === 'block' ? 'monitor' : action;
}

/** Parse a call's arguments: JSON text or an object; empty/absent = no arguments. */
export function parseArguments(args: ToolCall['arguments']): Record<string, unknown> | null {
  if (args === undefined || args === null) return {};
  if (typeof args === 'object') return Array.isArray(args) ? null : args;
  if (args.trim() === '') return {};
  try {
    const v: unknown = JSON.parse(args);
    return v !== null && typeof v === 'object' && !Array.isArray(v) ? (v as Record<string, unknown>) : null;
  } catch {
    return null;
  }
}

function asText(v: unknown): string {
  return typeof v === 'string' ? v : (JSON.stringify(v) ?? '');
}

function argProblem(c: CompiledArg, value: unknown): string | null {
  if (value === undefined) return c.required ? 'required argument missing' : null;
  if (c.enum !== undefined && !c.enum.some((e) => e === value)) return 'not one of the allowed values';
  if (c.minimum !== undefined || c.maximum !== undefined) {
    const n =
      typeof value === 'number'
        ? value
        : typeof value === 'string' && value.trim() !== ''
          ? Number(value)
          : NaN;
    if (!Number.isFinite(n)) return 'not a number';
    if (c.minimum !== undefined && n < c.minimum) return 'below minimum';
    if (c.maximum !== undefined && n > c.maximum) return 'above maximum';
  }
  if (c.pattern !== undefined || c.deny.length > 0) {
    const text = asText(value);
    if (c.pattern !== undefined) {
      c.pattern.lastIndex = 0;
      if (!c.pattern.test(text)) return 'does not match the allowed pattern';
    }
    for (const d of c.deny) {
      d.lastIndex = 0;
      if (d.test(text)) return 'matches a denied pattern';
    }
  }
  return null;
}

/** Findings for one tool call (name allowed, arguments well-formed and within constraints). */
export function checkCall(tools: CompiledTools, call: ToolCall, direction: Direction, mode: Mode): Finding[] {
  const base = { category: 'tools', direction, start: -1, end: -1, path: call.path, tool: call.name };
  if (!toolAllowed(tools, call.name)) {
    return [
      {
        ...base,
        rule: 'tools.denied',
        action: effective('block', mode),
        message: `tool "${call.name}" is not allowed`,
      },
    ];
  }
  const args = parseArguments(call.arguments);
  if (args === null) {
    return [
      {
        ...base,
        rule: 'tools.malformed-arguments',
        action: effective('block', mode),
        message: 'arguments are not a JSON object',
      },
    ];
  }
  const constraints = tools.allow.get(call.name);
  if (constraints === undefined) return [];
  const out: Finding[] = [];
  for (const c of constraints) {
    const problem = argProblem(
      c,
      Object.prototype.hasOwnProperty.call(args, c.name) ? args[c.name] : undefined,
    );
    if (problem !== null) {
      out.push({
        ...base,
        rule: 'tools.argument',
        action: effective('block', mode),
        message: `tool "${call.name}" argument "${c.name}": ${problem}`,
      });
    }
  }
  return out;
}

/** Tool definitions the request must drop, with one `tools.removed` finding each. */
export function checkDefinitions(
  tools: CompiledTools,
  defs: readonly { path: string; name: string }[],
): { remove: string[]; findings: Finding[] } {
  const remove: string[] = [];
  const findings: Finding[] = [];
  for (const d of defs) {
    if (toolAllowed(tools, d.name)) continue;
    remove.push(d.name);
    findings.push({
      rule: 'tools.removed',
      category: 'tools',
      action: 'allow',
      direction: 'input',
      start: -1,
      end: -1,
      path: d.path,
      tool: d.name,
      message: `tool "${d.name}" removed from the request`,
    });
  }
  return { remove, findings };
}
