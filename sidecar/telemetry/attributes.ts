// Span attribute names, in one place so docs/telemetry.md and the tests name the same keys.
// Values are rule ids, categories, decisions, routes and identities: never prompt, output or matched text.
export const ATTR = {
  decision: 'inferguard.decision',
  ruleId: 'inferguard.rule.id',
  ruleCategory: 'inferguard.rule.category',
  /** every distinct rule id behind one decision, when more than one rule matched */
  ruleIds: 'inferguard.rule.ids',
  direction: 'inferguard.direction',
  findingCount: 'inferguard.findings.count',
  failOpen: 'inferguard.fail_open',
  policyHash: 'inferguard.policy.hash',
  action: 'inferguard.action',
  path: 'inferguard.path',
  decoded: 'inferguard.decoded',
  protocol: 'inferguard.protocol',
  operation: 'gen_ai.operation.name',
  model: 'gen_ai.request.model',
  toolName: 'gen_ai.tool.name',
  rpcSystem: 'rpc.system',
  rpcService: 'rpc.service',
  rpcMethod: 'rpc.method',
  grpcStatus: 'rpc.grpc.status_code',
  httpMethod: 'http.request.method',
  httpStatus: 'http.response.status_code',
  urlPath: 'url.path',
  podName: 'k8s.pod.name',
  namespace: 'k8s.namespace.name',
} as const;

/** the span event recorded per finding on a decision span */
export const FINDING_EVENT = 'inferguard.finding';
