// The API server's validation of the names and values kpx reads (k8s.io/apimachinery/pkg/util/validation):
// what an object admitted by kube-apiserver always satisfies, so what kpx may rely on before any of it reaches
// rule text. Each check returns undefined when the value is valid, else the API server's reason.

const DNS1123_LABEL = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/;
const DNS1035_LABEL = /^[a-z]([-a-z0-9]*[a-z0-9])?$/;
const DNS1123_SUBDOMAIN = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$/;
const QUALIFIED_NAME = /^([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]$/;
const LABEL_VALUE = /^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$/;
const IANA_SVC_NAME = /^[-a-z0-9]+$/;

/** At most `max` characters of `s`, for messages. */
function clip(s: string, max = 80): string {
  return s.length > max ? `${s.slice(0, max)}…` : s;
}

/**
 * A value as a diagnostic may quote it: JSON (so a newline or a quote stays escaped and cannot start a line of
 * its own), clipped, and never throwing (a circular or very deep value is named by its type).
 */
export function show(v: unknown): string {
  if (v === undefined) return 'undefined';
  // JSON escapes control characters but not U+2028/U+2029 (line separators to some readers) nor DEL and C1:
  // everything outside printable ASCII is written as \uXXXX.
  if (typeof v === 'string')
    return clip(
      JSON.stringify(v).replace(/[^\x20-\x7e]/g, (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`),
      100,
    );
  if (typeof v === 'number' || typeof v === 'boolean' || v === null) return String(v);
  if (Array.isArray(v)) return `an array of ${v.length}`;
  if (typeof v === 'object') return 'an object';
  return typeof v;
}

/**
 * A name as the object reference of a diagnostic prints it: as it is when it is a plain printable string of
 * the characters names may hold, else quoted by {@link show}.
 */
export function refName(v: unknown, missing = '<unnamed>'): string {
  if (v === undefined || v === null || v === '') return missing;
  if (typeof v === 'string' && /^[A-Za-z0-9._-]{1,253}$/.test(v)) return v;
  return show(v);
}

function notString(v: unknown): string | undefined {
  return typeof v === 'string' ? undefined : `must be a string, not ${show(v)}`;
}

/** RFC 1123 label: a Namespace's name, a Service's port name, an EndpointSlice's port name. */
export function checkDNS1123Label(v: unknown): string | undefined {
  const bad = notString(v);
  if (bad !== undefined) return bad;
  const s = v as string;
  if (s.length > 63) return `must be no more than 63 characters (${s.length})`;
  if (!DNS1123_LABEL.test(s))
    return `${show(s)} must be a lowercase RFC 1123 label: lower case letters, digits and '-', starting and ending with a letter or digit`;
  return undefined;
}

/** RFC 1035 label: a Service's name. */
export function checkDNS1035Label(v: unknown): string | undefined {
  const bad = notString(v);
  if (bad !== undefined) return bad;
  const s = v as string;
  if (s.length > 63) return `must be no more than 63 characters (${s.length})`;
  if (!DNS1035_LABEL.test(s))
    return `${show(s)} must be an RFC 1035 label: lower case letters, digits and '-', starting with a letter and ending with a letter or digit`;
  return undefined;
}

/** RFC 1123 subdomain: an EndpointSlice's or a Node's name. */
export function checkDNS1123Subdomain(v: unknown): string | undefined {
  const bad = notString(v);
  if (bad !== undefined) return bad;
  const s = v as string;
  if (s.length > 253) return `must be no more than 253 characters (${s.length})`;
  if (!DNS1123_SUBDOMAIN.test(s))
    return `${show(s)} must be a lowercase RFC 1123 subdomain: lower case letters, digits, '-' and '.', each label starting and ending with a letter or digit`;
  return undefined;
}

/** An IANA service name (RFC 6335): a named targetPort. */
export function checkIANAServiceName(v: unknown): string | undefined {
  const bad = notString(v);
  if (bad !== undefined) return bad;
  const s = v as string;
  if (s.length < 1 || s.length > 15) return `${show(s)} must be from 1 to 15 characters`;
  if (!IANA_SVC_NAME.test(s)) return `${show(s)} must contain only lower case letters, digits and '-'`;
  if (!/[a-z]/.test(s)) return `${show(s)} must contain at least one letter`;
  if (s.includes('--')) return `${show(s)} must not contain consecutive hyphens`;
  if (s.startsWith('-') || s.endsWith('-')) return `${show(s)} must not begin or end with a hyphen`;
  return undefined;
}

/** A label (or annotation) key: `[prefix/]name`, the prefix an RFC 1123 subdomain. */
export function checkQualifiedName(v: unknown): string | undefined {
  const bad = notString(v);
  if (bad !== undefined) return bad;
  const s = v as string;
  const parts = s.split('/');
  if (parts.length > 2) return `${show(s)} must be a qualified name: [prefix/]name`;
  const name = parts[parts.length - 1] ?? '';
  if (parts.length === 2) {
    const prefix = parts[0] ?? '';
    if (prefix === '' || checkDNS1123Subdomain(prefix) !== undefined)
      return `${show(s)}: the prefix must be a lowercase RFC 1123 subdomain`;
  }
  if (name.length === 0 || name.length > 63 || !QUALIFIED_NAME.test(name)) {
    return `${show(s)}: the name part must be 1 to 63 characters: letters, digits, '-', '_' and '.', starting and ending with a letter or digit`;
  }
  return undefined;
}

/** A label value: at most 63 characters: letters, digits, '-', '_' and '.', starting and ending with a letter or digit. */
export function checkLabelValue(v: unknown): string | undefined {
  const bad = notString(v);
  if (bad !== undefined) return bad;
  const s = v as string;
  if (s.length > 63) return `must be no more than 63 characters (${s.length})`;
  if (!LABEL_VALUE.test(s))
    return `${show(s)} must be empty or letters, digits, '-', '_' and '.', starting and ending with a letter or digit`;
  return undefined;
}

export const isPlainObject = (v: unknown): v is Record<string, unknown> =>
  typeof v === 'object' && v !== null && !Array.isArray(v);
