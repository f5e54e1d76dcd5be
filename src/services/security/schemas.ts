/** JSON Schema fragments the security service's routes share. */
export const NAME = { type: 'string', minLength: 1, maxLength: 64 } as const;
export const B64URL = { type: 'string', minLength: 1, maxLength: 4096, pattern: '^[A-Za-z0-9_-]+$' } as const;
