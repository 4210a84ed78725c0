import type { EventRecord } from '../../store/records.js';
import { MailsyncError } from '../../errors.js';
import { commandConfig, UsageError, type Command } from '../command.js';
import { ACCESS_HELP, describeAccess, openStoreAccess } from '../store-access.js';
import type { FeedEvent } from './events-list.js';

/** Failed events redelivered by one `--failed` run at most; run it again for more. */
const MAX_FAILED = 10_000;

const command: Command = {
  name: 'events redeliver',
  usage: '(EVENT_ID... | --failed)',
  summary: 'send events to the webhook again: the ones named, or every failed one',
  help: `Each event is queued again with a fresh set of retries. While the daemon runs it delivers them at once; with the daemon stopped they are queued in the store and delivered when it starts. Needs webhooks.url. ${ACCESS_HELP}`,
  options: { failed: { type: 'boolean' } },
  positionals: { min: 0, max: 1_000 },
  async run(args) {
    const { values, positionals, io } = args;
    if (!values.failed && positionals.length === 0) throw new UsageError('name the events to redeliver, or give --failed');
    if (values.failed && positionals.length) throw new UsageError('give event ids or --failed, not both');
    for (const id of positionals) if (!/^evt_[0-9a-z]{1,40}$/.test(id)) throw new UsageError(`"${id}" is not an event id (evt_…)`);
    const config = commandConfig(args);
    if (!config.webhooks.url) throw new MailsyncError('MAILSYNC_ERR_CONFIG', 'no webhook URL is configured (webhooks.url): events are only in the change feed, there is nothing to redeliver to');
    const access = await openStoreAccess(config);
    let done = 0;
    const missing: string[] = [];
    try {
      if (access.via === 'daemon') {
        let ids = positionals;
        if (values.failed) {
          ids = [];
          let after = '0';
          for (;;) {
            const page = await access.daemon.json<{ events: FeedEvent[]; nextCursor: string }>('GET', `/v1/events?status=failed&limit=1000&after=${after}`);
            ids.push(...page.events.map((e) => e.id));
            if (page.events.length === 0 || ids.length >= MAX_FAILED) break;
            after = page.nextCursor;
          }
        }
        for (const id of ids) {
          try {
            await access.daemon.request('POST', `/v1/events/${id}/redeliver`);
            done++;
          } catch (err) {
            if ((err as { status?: number }).status === 404) missing.push(id);
            else throw err;
          }
        }
      } else {
        const { outbox } = access;
        const events: EventRecord[] = [];
        if (values.failed) events.push(...(await outbox.list(0, MAX_FAILED, (e) => e.status === 'failed')));
        for (const id of positionals) {
          const seq = outbox.seqOf(id);
          const e = seq === null ? undefined : await outbox.get(seq);
          if (e) events.push(e);
          else missing.push(id);
        }
        for (const e of events) {
          // the same reset the running dispatcher does; the daemon picks the queue up when it starts
          await outbox.update({ ...e, status: 'pending', attempts: 0, nextAttemptAt: null, lastError: null });
          done++;
        }
      }
    } finally {
      await access.close();
    }
    io.stdout.write(`${done} event(s) queued for redelivery${access.via === 'store' ? ' (delivered when the daemon starts)' : ''}\n`);
    for (const id of missing) io.stderr.write(`no event ${id}\n`);
    io.stderr.write(`${describeAccess(access, config)}\n`);
    return missing.length ? 1 : 0;
  },
};
export default command;
