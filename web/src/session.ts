import { createContext, useContext } from 'react';
import type { Session } from './types';

export interface SessionContextValue { session: Session; signOut(): Promise<void> }
export const SessionContext = createContext<SessionContextValue | null>(null);
export function useSession(): SessionContextValue {
  const s = useContext(SessionContext);
  if (!s) throw new Error('useSession outside the signed-in app');
  return s;
}
