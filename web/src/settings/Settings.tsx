import { useEffect } from 'react';
import { linkClick, navigate, usePath } from '../router';
import { useSession } from '../session';
import { Accounts } from './Accounts';
import { Webhooks } from './Webhooks';
import { ApiKeys } from './ApiKeys';
import { Users } from './Users';
import { Profile } from './Profile';
import { CannedSettings } from './CannedSettings';

const TABS = [
  { id: 'accounts', label: 'Accounts', admin: true },
  { id: 'webhooks', label: 'Webhooks', admin: true },
  { id: 'api-keys', label: 'API keys', admin: true },
  { id: 'users', label: 'Users', admin: true },
  { id: 'canned', label: 'Canned responses', admin: false },
  { id: 'profile', label: 'Profile', admin: false },
];

export default function Settings() {
  const { session } = useSession();
  const admin = session.user.role === 'admin';
  const path = usePath();
  const tabs = TABS.filter((t) => admin || !t.admin);
  const current = path.split('/')[2] ?? '';
  const tab = tabs.find((t) => t.id === current);

  useEffect(() => { if (!tab) navigate('/settings/' + tabs[0].id, { replace: true }); }, [tab, tabs]);
  useEffect(() => { document.title = `${tab?.label ?? 'Settings'} · dmgate`; }, [tab]);

  return (
    <div className="settings">
      <nav className="settings-nav" aria-label="Settings">
        <h1 className="sr-only">Settings</h1>
        <ul>
          {tabs.map((t) => (
            <li key={t.id}><a href={'/settings/' + t.id} aria-current={t.id === current ? 'page' : undefined} onClick={(e) => linkClick(e, '/settings/' + t.id)}>{t.label}</a></li>
          ))}
        </ul>
        {!admin && <p className="muted small">Accounts, webhooks, API keys and users are managed by admins.</p>}
      </nav>
      <div className="settings-body">
        {current === 'accounts' && admin && <Accounts />}
        {current === 'webhooks' && admin && <Webhooks />}
        {current === 'api-keys' && admin && <ApiKeys />}
        {current === 'users' && admin && <Users />}
        {current === 'canned' && <CannedSettings />}
        {current === 'profile' && <Profile />}
      </div>
    </div>
  );
}
