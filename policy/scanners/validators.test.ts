import { describe, expect, it } from 'vitest';
import { VALIDATORS, isPlaceholder, shannonEntropy, valuePart } from './validators.js';

const { luhn, iban, ssn, entropy, ip } = VALIDATORS;

describe('luhn', () => {
  it('accepts test card numbers published by the card networks', () => {
    for (const n of ['4111 1111 1111 1111', '5500-0000-0000-0004', '378282246310005', '6011000990139424']) {
      expect(luhn(n, {}), n).toBe(true);
    }
  });
  it('rejects a 16-digit number whose checksum is wrong', () => {
    expect(luhn('4111 1111 1111 1112', {})).toBe(false);
    expect(luhn('1234567812345678', {})).toBe(false);
  });
  it('rejects repeated-digit placeholders and wrong lengths', () => {
    expect(luhn('0000 0000 0000 0000', {})).toBe(false);
    expect(luhn('424242424242', {})).toBe(false);
    expect(luhn('42424242424242424242', {})).toBe(false);
  });
});

describe('iban', () => {
  it('accepts valid IBANs with and without spaces', () => {
    for (const n of [
      'DE89 3704 0044 0532 0130 00',
      'GB82WEST12345698765432',
      'FR1420041010050500013M02606',
      'NL91ABNA0417164300',
    ]) {
      expect(iban(n, {}), n).toBe(true);
    }
  });
  it('rejects a wrong check digit, a wrong length and an unknown country', () => {
    expect(iban('DE89 3704 0044 0532 0130 01', {})).toBe(false);
    expect(iban('DE89 3704 0044 0532 0130', {})).toBe(false);
    expect(iban('QQ89370400440532013000', {})).toBe(false);
  });
});

describe('ssn', () => {
  it('accepts numbers in the issued ranges', () => {
    expect(ssn('123-45-6789', {})).toBe(true);
    expect(ssn('536 22 1834', {})).toBe(true);
  });
  it('rejects area 000, 666 and 9xx, group 00, serial 0000 and voided example numbers', () => {
    for (const n of [
      '000-12-3456',
      '666-12-3456',
      '912-12-3456',
      '123-00-4567',
      '123-45-0000',
      '078-05-1120',
    ]) {
      expect(ssn(n, {}), n).toBe(false);
    }
  });
});

describe('entropy', () => {
  it('accepts random-looking values at the default threshold', () => {
    expect(entropy('password = "Zq8#vT2m!pL9xR4w"', {})).toBe(true);
    expect(entropy('"api_key": "9f8e7d6c5b4a39281706f5e4d3c2b1a0"', { minEntropy: 3.5 })).toBe(true);
  });
  it('rejects words and placeholders', () => {
    for (const m of [
      'password = "changeme"',
      'password: hunter',
      'api_key = "${API_KEY}"',
      'token = "<your-token-here>"',
      'secret = "xxxxxxxxxxxxxxxx"',
      'secret = "{{ .Values.secret }}"',
      'aws_secret_access_key = wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY',
      'password = "********"',
      'key = process.env.OPENAI_API_KEY',
      'SECRET_KEY = settings.DJANGO_SECRET_KEY',
      'token = jwt.encode',
    ]) {
      expect(entropy(m, {}), m).toBe(false);
    }
  });
  it('honours a rule-specific threshold', () => {
    expect(entropy('abcdefgh', { minEntropy: 3 })).toBe(true);
    expect(entropy('abcdefgh', { minEntropy: 3.1 })).toBe(false);
  });
  it('measures the value part whether given the assignment or only the value', () => {
    expect(valuePart('"password": "s3cr3t!"')).toBe('s3cr3t!');
    expect(valuePart("token='abc'")).toBe('abc');
    expect(valuePart('Zq8vT2mpL9xR')).toBe('Zq8vT2mpL9xR');
    expect(shannonEntropy('aaaa')).toBe(0);
    expect(shannonEntropy('abcd')).toBe(2);
    expect(isPlaceholder('$HOME')).toBe(true);
  });
});

describe('ip', () => {
  it('accepts valid IPv4 and IPv6 addresses', () => {
    for (const a of [
      '192.0.2.1',
      '8.8.8.8',
      '203.0.113.42',
      '172.32.0.1',
      '2001:db8::1',
      '1:2:3:4:5:6:7:8',
    ]) {
      expect(ip(a, {}), a).toBe(true);
    }
  });
  it('rejects out-of-range octets, leading zeros, unspecified and broadcast addresses', () => {
    for (const a of [
      '256.1.1.1',
      '1.2.3',
      '01.2.3.4',
      '0.0.0.0',
      '255.255.255.255',
      '::',
      '1::2::3',
      '12345::1',
    ]) {
      expect(ip(a, {}), a).toBe(false);
    }
  });
  it('rejects addresses that identify no one: loopback, private and link-local', () => {
    for (const a of [
      '127.0.0.1',
      '10.0.0.1',
      '172.16.5.4',
      '192.168.1.1',
      '169.254.0.7',
      '::1',
      'fe80::1',
      'fd12:3456::1',
    ]) {
      expect(ip(a, {}), a).toBe(false);
    }
  });
});
