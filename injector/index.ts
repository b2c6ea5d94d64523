// The injector's public surface (STYLE: "injector exports mutate(object, settings)"). Programs are
// reached through cli.ts (`inferguard injector | inject | init-redirect`), not through this file.
export {
  mutate,
  denialMessage,
  DEFAULT_SETTINGS,
  SKIP_REASONS,
  DENY_REASONS,
  type InjectorSettings,
  type MutateContext,
  type MutateResult,
  type InjectionStatus,
} from './mutate.js';
export {
  ANNOTATION,
  ANNOTATION_DOCS,
  NAMESPACE_LABEL,
  POLICY_CONFIGMAP_LABEL,
  POLICY_CONFIGMAP_KEY,
} from './annotations.js';
