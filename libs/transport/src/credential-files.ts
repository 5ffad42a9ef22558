// Certificates, private keys and CA bundles named on the command line (gRPC mTLS; the NATS credentials may use it
// too). Read once at start; a private key readable by group or others is warned about, naming the file. Contents
// are never logged nor put into an error message.
import { readFileSync, statSync } from 'node:fs';
import { CredentialFileError } from './errors.js';

export interface ReadCredentialOptions {
  /** The flag that named the file, for messages (e.g. `--tls-private-key-file`). */
  readonly flag: string;
  /** A private key (or anything secret): warn when group or others may read it. */
  readonly secret?: boolean;
  /** Where the permission warning goes (the component's logger). */
  readonly warn?: (fields: Record<string, unknown>, message: string) => void;
}

/** The file's bytes; CredentialFileError when it cannot be read or is empty. */
export function readCredentialFile(path: string, opts: ReadCredentialOptions): Buffer {
  let data: Buffer;
  let mode: number;
  try {
    mode = statSync(path).mode;
    data = readFileSync(path);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    throw new CredentialFileError(
      opts.flag,
      path,
      code === 'ENOENT'
        ? 'no such file'
        : code === 'EACCES'
          ? 'permission denied'
          : `cannot be read (${code ?? 'error'})`,
      { cause: err },
    );
  }
  if (data.length === 0) throw new CredentialFileError(opts.flag, path, 'is empty');
  if (opts.secret === true && (mode & 0o077) !== 0) {
    const octal = (mode & 0o777).toString(8).padStart(4, '0');
    opts.warn?.(
      { file: path, flag: opts.flag, mode: octal },
      `private key file ${path} is readable by group or others (mode ${octal}); make it 0600 (or defaultMode 0400 on a Secret volume)`,
    );
  }
  return data;
}

/** The files of one side of a TLS connection, as given by flags. */
export interface TlsFiles {
  readonly certFile: string;
  readonly keyFile: string;
  /** The CA that signs the peer's certificates (--client-ca-file on the controller, --ca-file on clients). */
  readonly caFile: string;
}

export interface TlsMaterial {
  readonly cert: Buffer;
  readonly key: Buffer;
  readonly ca: Buffer;
}

/** Reads the three files; `caFlag` names the CA flag of this side in messages. */
export function readTlsFiles(
  files: TlsFiles,
  opts: { caFlag: string; warn?: ReadCredentialOptions['warn'] },
): TlsMaterial {
  return {
    cert: readCredentialFile(files.certFile, { flag: '--tls-cert-file' }),
    key: readCredentialFile(files.keyFile, {
      flag: '--tls-private-key-file',
      secret: true,
      ...(opts.warn ? { warn: opts.warn } : {}),
    }),
    ca: readCredentialFile(files.caFile, { flag: opts.caFlag }),
  };
}

/**
 * The TLS files of a command from its flags: undefined when none is given; all three or a message naming what is
 * missing.
 */
export function tlsFilesFromFlags(
  values: { 'tls-cert-file'?: string | undefined; 'tls-private-key-file'?: string | undefined },
  caFile: string | undefined,
  caFlag: string,
): TlsFiles | string | undefined {
  const certFile = values['tls-cert-file'];
  const keyFile = values['tls-private-key-file'];
  if (certFile === undefined && keyFile === undefined && caFile === undefined) return undefined;
  const missing = [
    certFile === undefined ? '--tls-cert-file' : '',
    keyFile === undefined ? '--tls-private-key-file' : '',
    caFile === undefined ? caFlag : '',
  ].filter(Boolean);
  if (missing.length > 0)
    return `TLS needs --tls-cert-file, --tls-private-key-file and ${caFlag} together: missing ${missing.join(', ')}`;
  return { certFile: certFile!, keyFile: keyFile!, caFile: caFile! };
}
