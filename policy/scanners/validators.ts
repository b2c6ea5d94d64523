// Post-match validators: a rule that names one only fires when the matched text passes it.
// (Skeleton: the secrets and pii packs fill these in.)
import type { ValidatorName } from '../types.js';

export type Validator = (match: string, rule: { minEntropy?: number }) => boolean;

export const VALIDATORS: Record<ValidatorName, Validator> = {
  luhn: () => true,
  iban: () => true,
  ssn: () => true,
  entropy: () => true,
  ip: () => true,
};
