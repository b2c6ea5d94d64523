import js from '@eslint/js';
import tseslint from 'typescript-eslint';

export default tseslint.config(
  { ignores: ['dist/**', 'node_modules/**', 'helm/**/templates/**'] },
  js.configs.recommended,
  ...tseslint.configs.recommended,
  {
    rules: {
      '@typescript-eslint/no-unused-vars': ['error', { argsIgnorePattern: '^_', varsIgnorePattern: '^_' }],
      '@typescript-eslint/no-explicit-any': 'off',
    },
  },
  {
    // The engine is protocol-agnostic and does no network I/O (SPEC §1).
    files: ['policy/**/*.ts'],
    ignores: ['policy/**/*.test.ts'],
    rules: {
      'no-restricted-imports': [
        'error',
        {
          patterns: [
            {
              group: ['node:http', 'node:http2', 'node:https', 'node:net', 'http', 'https', 'net', 'http2'],
              message: 'policy/ does no network I/O',
            },
            { group: ['@grpc/*', 'undici'], message: 'policy/ is protocol-agnostic' },
            {
              group: ['../sidecar/*', '../injector/*', '../../sidecar/*', '../../injector/*'],
              message: 'policy/ imports nothing of ours',
            },
          ],
        },
      ],
    },
  },
);
