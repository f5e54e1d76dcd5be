/** What a role may do: per database, a set of actions. `*` as a database name means every database. */
export const ACTIONS = ['read', 'query', 'write'] as const;
export type Action = (typeof ACTIONS)[number];

export interface Grant {
  database: string;
  actions: Action[];
}

export interface Role {
  name: string;
  description: string;
  grants: Grant[];
}
