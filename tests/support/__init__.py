"""What the tests share, as plain modules (fixtures stay in the conftest files):

- `database`: sessions on a test database, databases of a test's own, the rolled-back session;
- `settings`: the test settings' keys, the environment a child process is configured by, and
  the command line run in it;
- `platform`: the app, a worker and the Stripe emulator as real processes;
- `stripe`: the emulator as a process, paying on its hosted page, events signed like Stripe's;
- `http`: the app served in-process, and `Api`, a client with sign-up and bearer helpers;
- `pages`: `Browser`, page requests with cookies and CSRF; `markup`: reading the HTML;
- `mailbox`: the e-mails the app sent (its outbox), and following their links: how a new
  account gets its address verified (`Api.sign_up`, `Browser.sign_up` and `Shopper.sign_up` do
  it; `AppClient` is the HTTP client of an app process that knows its database);
- `shopper`: a customer buying over the JSON API; `orders`: paid orders written directly;
- `admins`: a user made an admin; `catalog`: catalog changes as an admin makes them;
  `clock`: a clock tests move;
- `jobs`: the context the worker gives a job, for a test that runs one itself, and a publisher
  that records what is sent;
- `state_machines`: what the order and instance state-machine tests share;
- `saved_cards`: an account with a card saved at the emulator, and an auto-recharge rule;
- `openapi`: an answer held to its documented schema and its response model's serialization.
"""
