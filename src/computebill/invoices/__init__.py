"""Paperwork: numbered invoices of paid orders and credited top-ups, the billing profile they are
addressed to, and monthly statements of the credit ledger, as JSON, HTML, PDF and CSV."""
