// Apart from app.ts so that clients (`user login`) name the lab's issuer without loading fastify.

export function labIssuer(labId: string): string {
  return `trusted-ms://lab-${labId}/security`;
}

export function labAudience(labId: string): string {
  return `trusted-ms://lab-${labId}`;
}
